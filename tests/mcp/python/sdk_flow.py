"""Keyway's authorization server and /mcp with the official MCP Python SDK.

Run by tests/mcp/python_sdk.test.mjs against `keyway serve --dev` (KEYWAY_URL, and
KEYWAY_APP_KEY for ending the session). The SDK's OAuthClientProvider discovers the
metadata, registers, builds the PKCE request and exchanges the code; this script plays
the person in redirect_handler (dev login, approval form) over plain HTTP.
"""

import asyncio
import os
import re
import sys
import urllib.parse

import httpx2
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

BASE = os.environ["KEYWAY_URL"]
APP_KEY = os.environ["KEYWAY_APP_KEY"]
REDIRECT = "http://127.0.0.1:8765/callback"


class Memory(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


result: dict[str, str] = {}
FORM = {"content-type": "application/x-www-form-urlencoded"}


def form(pairs) -> str:
    return urllib.parse.urlencode(pairs)


async def person_approves(authorization_url: str) -> None:
    """The person's browser: Keyway -> dev login -> approval page -> back to the client."""
    async with httpx2.AsyncClient(follow_redirects=False) as b:
        r = await b.get(authorization_url)
        assert r.status_code == 303, r.text
        login = urllib.parse.urlparse(r.headers["location"])
        request_id = urllib.parse.parse_qs(login.query)["keyway_request"][0]
        r = await b.post(f"{BASE}/dev/login", content=form({"keyway_request": request_id, "user_id": "demo"}), headers=FORM)
        assert r.status_code == 303, r.text
        approval = r.headers["location"]
        r = await b.get(approval)
        assert "python-sdk" in r.text, r.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
        r = await b.post(
            approval,
            content=form([("csrf", csrf), ("integrations", "sandbox"), ("access", "read"), ("duration", "3600"), ("decision", "approve")]),
            headers=FORM,
        )
        assert r.status_code == 303, r.text
        back = urllib.parse.urlparse(r.headers["location"])
        q = urllib.parse.parse_qs(back.query)
        assert q["iss"][0] == BASE, q
        result["code"] = q["code"][0]
        result["state"] = q.get("state", [None])[0]
        result["iss"] = q["iss"][0]


async def callback() -> AuthorizationCodeResult:
    # RFC 9207: the SDK checks the issuer Keyway put on the redirect.
    return AuthorizationCodeResult(code=result["code"], state=result["state"], iss=result["iss"])


async def main() -> None:
    storage = Memory()
    provider = OAuthClientProvider(
        server_url=f"{BASE}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="python-sdk",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=person_approves,
        callback_handler=callback,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with streamable_http_client(f"{BASE}/mcp", http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                names = sorted(t.name for t in tools.tools)
                assert names == ["sandbox__call_api", "sandbox__get_profile", "sandbox__list_notes"], names
                ok = await session.call_tool("sandbox__get_profile", {})
                assert not ok.is_error, ok
                assert '"name": "Ada"' in ok.content[0].text, ok.content[0].text
                print("call: ok")
                refused = None
                try:
                    await session.call_tool("sandbox__call_api", {"method": "POST", "path": "notes"})
                except Exception as e:  # the 403 surfaces as an error
                    refused = e
                assert refused is not None, "a write in a read session must be refused"
                print(f"outside the approval: refused ({type(refused).__name__})")
    assert storage.tokens is not None and storage.tokens.refresh_token is None
    # End the session; the same token then gets 401.
    async with httpx2.AsyncClient() as api:
        sessions = (await api.get(f"{BASE}/v1/agent-sessions?user_id=demo&state=active", headers={"authorization": f"Bearer {APP_KEY}"})).json()
        # The SDK answers a 403 insufficient_scope by asking for approval again (step-up),
        # so the person approved twice; end every session.
        assert len(sessions) >= 1, sessions
        for sess in sessions:
            r = await api.delete(f"{BASE}/v1/agent-sessions/{sess['id']}", headers={"authorization": f"Bearer {APP_KEY}"})
            assert r.status_code == 200
        r = await api.post(
            f"{BASE}/mcp",
            headers={"authorization": f"Bearer {storage.tokens.access_token}", "accept": "application/json, text/event-stream", "content-type": "application/json"},
            content='{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
        )
        assert r.status_code == 401, r.status_code
        print("after the end: 401")
        r = await api.post(f"{BASE}/oauth2/token", content=form({"grant_type": "refresh_token", "refresh_token": "x", "client_id": storage.client.client_id}), headers=FORM)
        assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type", r.text
        print("refresh past the end: refused")


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
