// Where the gateway's pages keep bearer tokens in the browser: only under one
// key, the jobs page's (its Token field, until Forget). GraphiQL keeps the
// headers it sends in memory: what it writes to storage (tabs, history,
// favourites) goes through `graphiqlStorage`, which drops every Authorization
// header, and copies left by earlier versions of the page are scrubbed on load.
// Loaded by both pages before their own script; defines `JobsGatewayTokens`.
(function () {
  "use strict";

  var TOKEN_KEY = "jobs-gateway:token";
  var GRAPHIQL_PREFIX = "graphiql:"; // GraphiQL's namespace in storage

  function storages() {
    var found = [];
    [function () { return window.localStorage; }, function () { return window.sessionStorage; }]
      .forEach(function (get) {
        try {
          var storage = get();
          if (storage) found.push(storage);
        } catch (error) {
          // Storage disabled (privacy settings): nothing is kept there either.
        }
      });
    return found;
  }

  // A headers text without its Authorization entry; null when it cannot be read
  // as JSON but names one (half-typed), so it is not kept at all.
  function headersWithout(text) {
    if (typeof text !== "string" || !/authorization/i.test(text)) return text;
    var headers;
    try {
      headers = JSON.parse(text);
    } catch (error) {
      return null;
    }
    if (!headers || typeof headers !== "object" || Array.isArray(headers)) return null;
    Object.keys(headers).forEach(function (name) {
      if (name.toLowerCase() === "authorization") delete headers[name];
    });
    return Object.keys(headers).length ? JSON.stringify(headers, null, 2) : "";
  }

  // Every `headers` string anywhere in a JSON value (tabs, history entries).
  function scrubHeaders(value) {
    if (Array.isArray(value)) return value.map(scrubHeaders);
    if (!value || typeof value !== "object") return value;
    var copy = {};
    Object.keys(value).forEach(function (name) {
      copy[name] = name === "headers" ? headersWithout(value[name]) : scrubHeaders(value[name]);
    });
    return copy;
  }

  // What of GraphiQL's `value` for `key` may be stored: the same, minus tokens.
  function storable(key, value) {
    if (key === GRAPHIQL_PREFIX + "headers") return headersWithout(value);
    if (typeof value !== "string" || !/authorization/i.test(value)) return value;
    try {
      return JSON.stringify(scrubHeaders(JSON.parse(value)));
    } catch (error) {
      return value; // not JSON (a query's text): GraphiQL keeps no headers there
    }
  }

  // Rewrite GraphiQL's entries without Authorization headers; drop any entry
  // that still holds one of `tokens` (pasted into a query or variables).
  function scrubGraphiQL(tokens) {
    storages().forEach(function (storage) {
      for (var index = storage.length - 1; index >= 0; index--) {
        var key = storage.key(index);
        if (!key || key.indexOf(GRAPHIQL_PREFIX) !== 0) continue;
        var value = storage.getItem(key);
        var safe = storable(key, value);
        var leaks = (tokens || []).some(function (token) {
          return token && safe && safe.indexOf(token) !== -1;
        });
        if (!safe || leaks) storage.removeItem(key);
        else if (safe !== value) storage.setItem(key, safe);
      }
    });
  }

  // The `storage` GraphiQL is given: localStorage, minus Authorization headers.
  function graphiqlStorage() {
    var backing = storages()[0] || null;
    if (!backing) return null;
    return {
      getItem: function (key) {
        return backing.getItem(key);
      },
      setItem: function (key, value) {
        var safe = storable(key, value);
        if (safe) backing.setItem(key, safe);
        else backing.removeItem(key);
      },
      removeItem: function (key) {
        backing.removeItem(key);
      },
      clear: function () {
        // GraphiQL's "Clear storage": its own entries, not the jobs page's token.
        for (var index = backing.length - 1; index >= 0; index--) {
          var key = backing.key(index);
          if (key && key.indexOf(GRAPHIQL_PREFIX) === 0) backing.removeItem(key);
        }
      },
      get length() {
        return backing.length;
      },
    };
  }

  function token() {
    var storage = storages()[0];
    return (storage && storage.getItem(TOKEN_KEY)) || "";
  }

  function remember(value) {
    var storage = storages()[0];
    if (storage && value) storage.setItem(TOKEN_KEY, value);
    else forget();
  }

  // The jobs page's Forget: this token and every copy of it, wherever it is.
  function forget() {
    var forgotten = token();
    storages().forEach(function (storage) {
      storage.removeItem(TOKEN_KEY);
    });
    scrubGraphiQL([forgotten]);
  }

  scrubGraphiQL([]);

  window.JobsGatewayTokens = {
    token: token,
    remember: remember,
    forget: forget,
    graphiqlStorage: graphiqlStorage,
  };
})();
