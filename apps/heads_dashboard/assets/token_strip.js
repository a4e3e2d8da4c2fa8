// The token strip (apps/heads_dashboard/views/tokens.py): page-wide listeners, so the strip's spans
// need no pattern-matching ids (re-registering 64 of those on every head click cost about 0.13 s in
// Chromium).
// - A click on a token writes {index, at} to the "token-pick" store.
// - Hovering a token shades the strip by the selected head's attention from it (its row) or to it
//   (its column), read from the "strip-hover" store that a clientside callback hands over
//   (keep_strip_hover); no server round trip. Leaving the strip puts the server's colours back.
var headscopeStripHover = null;  // {shade: "from" | "to", values: [[...] per token]} or null

window.dash_clientside = Object.assign({}, window.dash_clientside, {
    headscope: {
        keep_strip_hover: function (data) {
            headscopeStripHover = data || null;
        }
    }
});

function headscopeStripSpan(target) {
    return target && target.closest ? target.closest("#head-tokens [data-index]") : null;
}

document.addEventListener("click", function (event) {
    var span = headscopeStripSpan(event.target);
    if (!span || !window.dash_clientside || !window.dash_clientside.set_props) {
        return;
    }
    window.dash_clientside.set_props("token-pick", {data: {index: Number(span.dataset.index), at: Date.now()}});
});

function headscopeShadeStrip(values) {
    // values: one number (or null: hidden by the causal mask) per token; opacity = value / largest
    var spans = document.querySelectorAll("#head-tokens [data-index]");
    var top = 0;
    values.forEach(function (v) { if (v !== null && v > top) { top = v; } });
    spans.forEach(function (span) {
        if (span.dataset.colour === undefined) {
            span.dataset.colour = span.style.background;  // the server's colour, put back on leave
        }
        var v = values[Number(span.dataset.index)];
        span.style.background = (v === null || v === undefined) ? "transparent"
            : "rgba(31, 119, 180, " + (top > 0 ? v / top : 0).toFixed(3) + ")";
    });
}

function headscopeRestoreStrip() {
    document.querySelectorAll("#head-tokens [data-index]").forEach(function (span) {
        if (span.dataset.colour !== undefined) {
            span.style.background = span.dataset.colour;
            delete span.dataset.colour;
        }
    });
}

document.addEventListener("mouseover", function (event) {
    var span = headscopeStripSpan(event.target);
    var hover = headscopeStripHover;
    if (!span || !hover || !hover.values) {
        return;
    }
    var values = hover.values[Number(span.dataset.index)];
    if (values && values.length === document.querySelectorAll("#head-tokens [data-index]").length) {
        headscopeShadeStrip(values);
    }
});

document.addEventListener("mouseout", function (event) {
    if (headscopeStripSpan(event.target) && !headscopeStripSpan(event.relatedTarget)) {
        headscopeRestoreStrip();
    }
});
