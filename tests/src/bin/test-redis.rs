//! One `redis-server` for a whole test run: `scripts/test.sh` starts this, reads the URL it
//! prints ("listening on redis://…") into `HUB_TEST_REDIS` for every test, and kills it at
//! the end (Redis dies with it).

fn main() {
    let url = e2e::redis::shared_url();
    eprintln!("test Redis listening on {url}");
    loop {
        std::thread::park();
    }
}
