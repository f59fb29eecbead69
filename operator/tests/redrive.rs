//! `operator redrive` against the AWS emulator: messages of the failed-event
//! queue (in the on-failure destination's format) go back to the function as
//! asynchronous invocations, each deleted only after Lambda accepted it;
//! `--max` bounds a run; a function that refuses the event leaves every
//! message in the queue.

use std::time::Duration;

use imagestack_operator::components;
use imagestack_operator::driver;
use imagestack_operator::redrive::{self, Redriven};
use serde_json::json;

mod common;
use common::harness;

/// What Lambda's on-failure destination writes for a failed S3 event.
fn failed_event(key: &str) -> String {
    json!({
        "version": "1.0",
        "timestamp": "2026-12-01T10:00:00.000Z",
        "requestContext": {"requestId": key, "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": {"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "up"}, "object": {"key": key}}}]},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "throttled by DynamoDB"}
    })
    .to_string()
}

#[tokio::test]
async fn failed_events_go_back_to_the_function_and_leave_the_queue() {
    let mut h = harness("environment: dev").await;
    // The queue, and a function to send to (the emulator records each
    // invocation attempt in the function's log group: it cannot run code).
    let q = h.desired.queue.clone();
    driver::reconcile_one(&h.ctx(), &q).await.unwrap();
    let url = components::queue::url(&h.ctx(), &q.name)
        .await
        .unwrap()
        .unwrap();
    let dir = std::env::temp_dir().join(common::unique("redrive"));
    std::fs::create_dir_all(&dir).unwrap();
    let zip = dir.join("x86_64.zip");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys,zipfile\nz=zipfile.ZipFile(sys.argv[1],'w')\nz.writestr('bootstrap','#!/bin/sh')\nz.close()",
            zip.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    h.desired.function.code = components::function::CodeSource::Zip { path: zip };
    let cx = h.ctx();
    for b in h.desired.buckets.clone() {
        driver::reconcile_one(&cx, &b).await.unwrap();
    }
    driver::reconcile_one(&cx, &h.desired.table).await.unwrap();
    driver::reconcile_one(&cx, &h.desired.role).await.unwrap();
    let f = h.desired.function.clone();
    driver::reconcile_one(&cx, &f).await.unwrap();

    for key in ["a.jpg", "b.jpg", "c.jpg"] {
        h.aws
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(failed_event(key))
            .send()
            .await
            .unwrap();
    }
    // --max 2: two sent and deleted, one left.
    let r = redrive::redrive(&h.aws, &url, &f.name, 2).await.unwrap();
    assert_eq!(r, Redriven { sent: 2, left: 1 });
    let r = redrive::redrive(&h.aws, &url, &f.name, 10).await.unwrap();
    assert_eq!(r, Redriven { sent: 1, left: 0 });
    // An empty queue: nothing to do.
    let r = redrive::redrive(&h.aws, &url, &f.name, 10).await.unwrap();
    assert_eq!(r, Redriven { sent: 0, left: 0 });
    // Lambda got three asynchronous invocations.
    let group = format!("/aws/lambda/{}", f.name);
    let mut seen = 0;
    for _ in 0..100 {
        seen = h
            .aws
            .logs
            .filter_log_events()
            .log_group_name(&group)
            .send()
            .await
            .map(|o| o.events().len())
            .unwrap_or(0);
        if seen >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 3, "invocations recorded");

    // A function that is not there refuses: the message stays in the queue.
    h.aws
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body(failed_event("d.jpg"))
        .send()
        .await
        .unwrap();
    let err = redrive::redrive(&h.aws, &url, "imagestack-no-such-function", 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lambda:InvokeFunction"), "{err}");
    assert_eq!(
        redrive::depth(&h.aws, &url).await.unwrap(),
        1,
        "nothing lost"
    );
}
