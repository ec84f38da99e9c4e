//! `serve --dev`: the demo works on a fresh machine with the built-in sandbox provider.

use keyway_testkit::{browser, csrf_of, location, TestKeyway, TestOptions};
use reqwest::Method;
use time::Duration;

#[tokio::test]
async fn dev_demo_connects_the_sandbox_and_hands_out_tokens() {
    let kw = TestKeyway::start(TestOptions {
        dev: true,
        ..Default::default()
    })
    .await;
    let dev = kw.dev.as_ref().expect("dev bootstrap");
    let app_key = dev.application_key.clone().expect("app key on first start");
    assert!(dev
        .admin_key
        .as_ref()
        .is_some_and(|k| k.starts_with("kw_admin_")));
    let b = browser();
    let html = b
        .get(&dev.connect_url)
        .send()
        .await
        .expect("widget")
        .text()
        .await
        .expect("html");
    assert!(html.contains("Keyway Sandbox") && html.contains("demo"));
    let r = b
        .post(&dev.connect_url)
        .form(&[("csrf", csrf_of(&html)), ("integration", "sandbox".into())])
        .send()
        .await
        .expect("start");
    let authorize = location(&r);
    assert!(authorize.starts_with(&format!("{}/sandbox/oauth/authorize", kw.url)));
    let page = b
        .get(&authorize)
        .send()
        .await
        .expect("sandbox page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Not for production"));
    let mut form: Vec<(String, String)> = Vec::new();
    for cap in page.split("<input type=\"hidden\" name=\"").skip(1) {
        let name = cap.split('"').next().unwrap_or_default().to_string();
        let value = cap
            .split("value=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_default();
        form.push((
            name,
            value
                .replace("&#x2f;", "/")
                .replace("&#x3d;", "=")
                .replace("&amp;", "&")
                .replace("&#x27;", "'")
                .replace("&quot;", "\""),
        ));
    }
    form.push(("account".into(), "Ada".into()));
    form.push(("decision".into(), "approve".into()));
    let r = b
        .post(format!("{}/sandbox/oauth/authorize", kw.url))
        .form(&form)
        .send()
        .await
        .expect("approve");
    assert_eq!(r.status(), 303);
    let cb = location(&r);
    assert!(cb.contains("iss="), "the sandbox sends RFC 9207 iss");
    let done = b.get(&cb).send().await.expect("callback");
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap_or_default().contains("Ada"));

    let t = kw
        .call(
            Method::POST,
            "/v1/token",
            Some(&app_key),
            Some(serde_json::json!({"integration": "sandbox", "user_id": "demo"})),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let tok = t.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let me = kw
        .http
        .get(format!("{}/sandbox/api/me", kw.url))
        .bearer_auth(&tok)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200);
    // The sandbox's access tokens live five minutes; its refresh tokens rotate.
    kw.clock.advance(Duration::minutes(10));
    let t2 = kw
        .call(
            Method::POST,
            "/v1/token",
            Some(&app_key),
            Some(serde_json::json!({"integration": "sandbox", "user_id": "demo"})),
        )
        .await;
    assert_eq!(t2.status, 200, "{}", t2.body);
    assert_ne!(t2.body["access_token"], t.body["access_token"]);
    let notes = kw
        .http
        .get(format!("{}/sandbox/api/notes", kw.url))
        .bearer_auth(t2.body["access_token"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("notes");
    assert_eq!(notes.status(), 200);
}

#[tokio::test]
async fn dev_keys_are_shown_once() {
    let kw = TestKeyway::start(TestOptions {
        dev: true,
        ..Default::default()
    })
    .await;
    let dir = kw.data_dir.clone();
    let key = kw.master_key.clone();
    let (_, tmp) = kw.into_data_dir();
    let kw = TestKeyway::start(TestOptions {
        dev: true,
        data_dir: Some(dir),
        master_key: Some(key),
        ..Default::default()
    })
    .await;
    let dev = kw.dev.as_ref().expect("dev");
    assert!(dev.admin_key.is_none() && dev.application_key.is_none());
    assert!(dev.connect_url.contains("/connect/kwcs_"));
    drop(tmp);
}
