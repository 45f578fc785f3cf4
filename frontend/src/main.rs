//! Entry point of the wasm bundle that `scripts/build-web.sh` builds: mounts the app on `<body>`.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(frontend::App);
}
