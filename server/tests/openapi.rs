//! `GET /api/openapi.json`: the description covers every route but the web app's files, and
//! the publishing rules it states (the `NewNotification` schema's patterns and lengths)
//! accept exactly what the server accepts. schemathesis runs against it in
//! `scripts/test.sh`.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use server::routes::STREAM_PATHS;
use support::{config, TestServer};

/// The description, as a live server serves it.
async fn description() -> serde_json::Value {
    let server = TestServer::start(config()).await;
    let document = reqwest::get(server.at(common::paths::OPENAPI))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.stop().await.unwrap();
    document
}

#[tokio::test]
async fn every_route_is_described() {
    let document = description().await;
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    use common::paths::*;
    for path in [
        NOTIFICATIONS,
        TRIGGER,
        HEALTHZ,
        METRICS,
        SESSION,
        STREAMS,
        OPENAPI,
    ]
    .into_iter()
    .chain(STREAM_PATHS)
    {
        assert!(paths.contains_key(path), "{path} is not described");
    }
    println!("{} paths described", paths.len());
}

#[tokio::test]
async fn the_publishing_rules_it_states_are_the_servers() {
    let document = description().await;
    let fields = &document["components"]["schemas"]["NewNotification"]["properties"];
    let pattern =
        |field: &str| regex::Regex::new(fields[field]["pattern"].as_str().unwrap()).unwrap();
    let max = |field: &str| fields[field]["maxLength"].as_u64().unwrap() as usize;
    let (stream, title, body) = (pattern("stream"), pattern("title"), pattern("body"));
    let (title_max, body_max) = (max("title"), max("body"));
    let described = |new: &common::NewNotification| {
        new.stream.as_deref().is_none_or(|s| stream.is_match(s))
            && title.is_match(&new.title)
            && new.title.chars().count() <= title_max
            && new
                .body
                .as_deref()
                .is_none_or(|b| body.is_match(b) && b.chars().count() <= body_max)
    };
    let text = || {
        prop_oneof![
            "[ -~]{0,10}",
            "[a-z_.\\-]{60,70}",
            "[\\x00-\\x20\\x7f-\\xa0 a\\n\\t\\r]{0,6}",
            any::<String>(),
            Just("x".repeat(200)),
            Just("x".repeat(201)),
            Just("y\n".repeat(2000)),
            Just("y".repeat(4001)),
        ]
    };
    let strategy = (
        proptest::option::of(text()),
        text(),
        proptest::option::of(text()),
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |(stream, title, body)| {
            let new = common::NewNotification {
                stream,
                title,
                body,
                level: None,
            };
            let accepted = common::Draft::try_from(new.clone()).is_ok();
            prop_assert_eq!(described(&new), accepted, "{:?}", new);
            Ok(())
        })
        .unwrap();
    println!("2,000 publish bodies: the description and the server agreed on each");
}
