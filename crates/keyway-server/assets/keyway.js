/*! keyway.js — open Keyway's connect widget from your page and hear how it ended.
 *
 *   <script src="https://keyway.example.com/assets/keyway.js"></script>
 *   Keyway.open(connectUrl, { mode: 'popup', onResult: (r) => console.log(r) });
 *   Keyway.open(connectUrl, { mode: 'inline', container: '#connect', onResult });
 *
 * `connectUrl` is the `url` of a connect session your backend created. Results arrive as
 * `{type: 'keyway:connected', integration, connection_id, status, account}`,
 * `{type: 'keyway:error', integration, error}` or
 * `{type: 'keyway:disconnected', connection_id}`; Keyway sends them only to the
 * application's allowed origins, and this script accepts them only from Keyway's origin.
 */
(function (global) {
  'use strict';

  function open(url, options) {
    options = options || {};
    var target = new URL(url, global.location.href);
    var origin = target.origin;
    var popup = null;
    var frame = null;

    function onMessage(ev) {
      var d = ev.data;
      if (ev.origin !== origin || !d || typeof d.type !== 'string' || d.type.indexOf('keyway:') !== 0) return;
      if (typeof options.onResult === 'function') options.onResult(d);
    }

    function close() {
      global.removeEventListener('message', onMessage);
      if (popup && !popup.closed) popup.close();
      if (frame && frame.parentNode) frame.parentNode.removeChild(frame);
    }

    global.addEventListener('message', onMessage);
    if (options.mode === 'inline') {
      var container = typeof options.container === 'string'
        ? global.document.querySelector(options.container)
        : options.container;
      if (!container) throw new Error('Keyway.open: inline mode needs a container');
      target.searchParams.set('embed', '1');
      frame = global.document.createElement('iframe');
      frame.src = target.toString();
      frame.title = options.title || 'Connect your accounts';
      frame.style.width = '100%';
      frame.style.border = '0';
      frame.style.minHeight = (options.height || 480) + 'px';
      container.appendChild(frame);
    } else {
      popup = global.open(target.toString(), 'keyway_connect', 'popup=yes,width=520,height=720');
      // A blocked popup: go to the widget in this window instead.
      if (!popup) global.location.assign(target.toString());
    }
    return { close: close, window: popup, frame: frame };
  }

  global.Keyway = { open: open, version: 1 };
})(window);
