//! The Lambda side: S3 events in; renditions, a metadata item and EMF metric
//! lines out. [`handler::Processor`] ties the pieces together; every piece
//! that does not talk to AWS is a pure function with its own tests.

pub mod config;
pub mod event;
pub mod handler;
pub mod identity;
pub mod metrics;
pub mod record;
pub mod store;

impl From<crate::Error> for lambda_runtime::Diagnostic {
    fn from(e: crate::Error) -> Self {
        let kind = match &e {
            crate::Error::S3 { .. } => "S3Error",
            crate::Error::DynamoDb { .. } => "DynamoDbError",
            crate::Error::Config { .. } => "ConfigError",
            crate::Error::Event(_) => "InvalidEvent",
            _ => "ProcessingError",
        };
        lambda_runtime::Diagnostic {
            error_type: format!("imagestack.{kind}"),
            error_message: e.to_string(),
        }
    }
}
