//! The Lambda entry point (packaged as `bootstrap` for `provided.al2023`).
//!
//! Configuration comes from the environment (see `imagestack_contract::env`);
//! a missing or invalid variable stops the function at start-up with an
//! error naming it.

use std::sync::Arc;

use imagestack_processor::lambda::config::Config;
use imagestack_processor::lambda::handler::Processor;
use imagestack_processor::lambda::store::Store;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Logs go to stderr; stdout carries the EMF metric lines. The runtime's
    // helper follows Lambda's logging controls: JSON lines when the function's
    // log format is JSON (AWS_LAMBDA_LOG_FORMAT), the level from
    // AWS_LAMBDA_LOG_LEVEL (else RUST_LOG, else INFO).
    lambda_runtime::tracing::init_default_subscriber_with_writer(std::io::stderr);
    let config = Config::from_env().inspect_err(|e| {
        tracing::error!(error = %e, "invalid configuration");
    })?;
    tracing::info!(
        environment = %config.environment,
        stack = config.stack.as_deref().unwrap_or(""),
        formats = ?config.settings.formats,
        parallelism = config.settings.parallelism,
        "imagestack processor {} starting",
        imagestack_processor::PROCESSOR_VERSION
    );
    let processor = Arc::new(Processor::new(config, Store::from_env().await));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let processor = Arc::clone(&processor);
        async move { processor.handle(event).await }
    }))
    .await
}
