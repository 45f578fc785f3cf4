//! Entry point of the wasm bundle that trunk builds (`index.html` names it): mounts the app on `<body>`.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(frontend::App);
}
