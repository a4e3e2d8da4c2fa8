// The token strip's clicks (apps/heads_dashboard/views/tokens.py): one listener for the page, so the
// strip's spans need no pattern-matching ids (re-registering 64 of those on every head click cost
// about 0.13 s in Chromium). A click on a token writes {index, at} to the "token-pick" store.
document.addEventListener("click", function (event) {
    var span = event.target.closest ? event.target.closest("#head-tokens [data-index]") : null;
    if (!span || !window.dash_clientside || !window.dash_clientside.set_props) {
        return;
    }
    window.dash_clientside.set_props("token-pick", {data: {index: Number(span.dataset.index), at: Date.now()}});
});
