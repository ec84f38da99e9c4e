// Keyway's own pages: report a finished flow to the page that opened the widget, and
// open connect links in a sized window. Every page works without this script.
(function () {
  'use strict';
  var body = document.body;
  var self = window.location.origin;
  var origins = [];
  try { origins = JSON.parse(body.getAttribute('data-kw-origins') || '[]'); } catch (e) { origins = []; }

  // Messages go to the application's allowed origins (and to Keyway's own embedded list,
  // which forwards them); postMessage drops them for any other receiver.
  function deliver(msg) {
    var targets = [];
    if (window.opener && window.opener !== window) targets.push(window.opener);
    if (window.parent && window.parent !== window) targets.push(window.parent);
    targets.forEach(function (w) {
      origins.concat([self]).forEach(function (o) {
        try { w.postMessage(msg, o); } catch (e) { /* a closed window */ }
      });
    });
  }

  var result = document.getElementById('kw-result');
  if (result) {
    var msg = null;
    try { msg = JSON.parse(result.getAttribute('data-result')); } catch (e) { msg = null; }
    if (msg) {
      deliver(msg);
      if (window.opener && body.hasAttribute('data-kw-close')) {
        setTimeout(function () { window.close(); }, 600);
      }
    }
  }

  // The embedded list: a window it opened finished a flow; tell the host page, refresh.
  window.addEventListener('message', function (ev) {
    var d = ev.data;
    if (ev.origin !== self || ev.source === window || !d || typeof d.type !== 'string' || d.type.indexOf('keyway:') !== 0) return;
    if (!body.hasAttribute('data-kw-list')) return;
    if (window.parent !== window) {
      origins.forEach(function (o) { try { window.parent.postMessage(d, o); } catch (e) { /* gone */ } });
    }
    var u = new URL(window.location.href);
    u.searchParams.delete('disconnected');
    window.location.replace(u.toString());
  });

  document.addEventListener('click', function (ev) {
    var a = ev.target && ev.target.closest ? ev.target.closest('a[data-kw-popup]') : null;
    if (!a) return;
    var w = window.open(a.href, 'keyway_connect', 'popup=yes,width=520,height=720');
    if (w) ev.preventDefault();
  });
})();
