//! The operator's one error type, and how each error shows on a stack's status.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// How an error is reported and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Will likely succeed on retry (throttling, 5xx, timeouts, eventual
    /// consistency): `Reconciling=True` with the reason, retried with backoff.
    Retryable,
    /// Needs a human (access denied, name conflict, invalid value):
    /// `Stalled=True` with reason and message; still retried, more slowly.
    Stalled,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An AWS API call failed.
    #[error("{action} failed: {code}: {message}")]
    Aws {
        /// IAM-style action, e.g. `s3:PutBucketPolicy`.
        action: String,
        /// AWS error code (or the transport failure kind).
        code: String,
        message: String,
        class: ErrorClass,
    },

    /// A resource with the stack's name exists but is not owned by this stack.
    #[error(
        "{kind} {name} already exists and is not owned by this stack ({owner}); it is left untouched"
    )]
    NameConflict {
        kind: &'static str,
        name: String,
        owner: String,
    },

    /// A bucket still holds objects and the spec does not allow emptying it.
    #[error(
        "bucket {bucket} is not empty ({count} object versions or delete markers{more}); set spec.buckets.emptyOnDelete=true to delete them, or empty it yourself"
    )]
    BucketNotEmpty {
        bucket: String,
        count: usize,
        more: &'static str,
    },

    /// The spec is valid for the API server but cannot be realised.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// An existing resource differs in a way that cannot be updated in place.
    #[error("{0}")]
    Immutable(String),

    /// Kubernetes API error.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),

    /// Operator configuration error (flags, kubeconfig, AWS configuration).
    #[error("configuration error: {0}")]
    Config(String),

    /// Error around the finalizer helper.
    #[error("finalizer: {0}")]
    Finalizer(String),

    /// Not an error: a multi-pass operation (deletion) is under way; poll again.
    #[error("in progress: {0}")]
    Pending(String),

    /// Serialization of an object failed.
    #[error("serialization failed: {0}")]
    Json(#[from] serde_json::Error),

    /// Deleting a component would stop half-way (deletion protection …).
    #[error("{kind} {name} cannot be deleted: {why}")]
    DeletionBlocked {
        kind: &'static str,
        name: String,
        why: String,
    },

    /// A bug in the operator (an invariant of the plan does not hold).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// AWS error codes that are worth retrying.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "SlowDown",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
    "OperationAborted",
    "ConcurrentModification",
    "ConcurrentModificationException",
    "ResourceInUseException",
    "ResourceConflictException",
    "LimitExceededException",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "EC2ThrottledException",
];

impl Error {
    /// Wrap an SDK error of `action` (e.g. `s3:CreateBucket`).
    pub fn aws<E>(action: impl Into<String>, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let action = action.into();
        if let Some(fenced) = fenced_write(&err) {
            return Error::Aws {
                action,
                code: "Fenced".into(),
                message: fenced.to_string(),
                class: ErrorClass::Retryable,
            };
        }
        match &err {
            SdkError::ServiceError(se) => {
                let status = Some(se.raw().status().as_u16());
                let e = se.err();
                // A 403 without an error code (HEAD requests have no body) is
                // still a denial: never mistake it for "not ours" or "missing".
                let code = match (e.code(), status) {
                    (Some(c), _) if !c.is_empty() => c.to_string(),
                    (_, Some(403)) => "AccessDenied".to_string(),
                    _ => "Unknown".to_string(),
                };
                let message = e.message().unwrap_or("").to_string();
                let class = classify(&code, status);
                Error::Aws {
                    action,
                    code,
                    message,
                    class,
                }
            }
            SdkError::TimeoutError(_) => Error::Aws {
                action,
                code: "Timeout".into(),
                message: "the request timed out".into(),
                class: ErrorClass::Retryable,
            },
            SdkError::DispatchFailure(d) => Error::Aws {
                action,
                code: "DispatchFailure".into(),
                message: format!("{:?}", d.as_connector_error()),
                class: ErrorClass::Retryable,
            },
            SdkError::ResponseError(_) => Error::Aws {
                action,
                code: "ResponseError".into(),
                message: format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
                class: ErrorClass::Retryable,
            },
            _ => Error::Aws {
                action,
                code: "ConstructionFailure".into(),
                message: format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
                class: ErrorClass::Stalled,
            },
        }
    }

    /// Retryable or needs a human.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Aws { class, .. } => *class,
            Error::NameConflict { .. }
            | Error::BucketNotEmpty { .. }
            | Error::InvalidSpec(_)
            | Error::Immutable(_)
            | Error::DeletionBlocked { .. }
            | Error::Internal(_)
            | Error::Config(_) => ErrorClass::Stalled,
            Error::Kube(_) | Error::Finalizer(_) | Error::Json(_) | Error::Pending(_) => {
                ErrorClass::Retryable
            }
        }
    }

    /// Short PascalCase reason for conditions and events.
    pub fn reason(&self) -> String {
        match self {
            Error::Aws { code, class, .. } => match (code.as_str(), class) {
                (c, _) if is_access_denied(c) => "AccessDenied".into(),
                (_, ErrorClass::Retryable) if is_throttle(code) => "Throttled".into(),
                (_, ErrorClass::Retryable) => "AWSRetrying".into(),
                (c, ErrorClass::Stalled)
                    if c.contains("Validation")
                        || c.contains("Invalid")
                        || c.contains("Malformed") =>
                {
                    "InvalidValue".into()
                }
                (_, ErrorClass::Stalled) => "AWSRejected".into(),
            },
            Error::NameConflict { .. } => "NameConflict".into(),
            Error::BucketNotEmpty { .. } => "BucketNotEmpty".into(),
            Error::InvalidSpec(_) => "InvalidSpec".into(),
            Error::Immutable(_) => "ImmutableField".into(),
            Error::Kube(_) => "KubernetesAPIError".into(),
            Error::Config(_) => "ConfigurationError".into(),
            Error::Finalizer(_) => "FinalizerError".into(),
            Error::Json(_) => "SerializationError".into(),
            Error::Pending(_) => "InProgress".into(),
            Error::DeletionBlocked { .. } => "DeletionBlocked".into(),
            Error::Internal(_) => "InternalError".into(),
        }
    }

    /// The error as status conditions, component messages and events show it:
    /// the action, the AWS error code and a short message. AWS messages can
    /// name the operator's own identity (`User: arn:aws:sts::…:assumed-role/…
    /// is not authorized …`), so for AWS errors only the code is kept with a
    /// message of our own, or the first sentence of AWS's, cut and with ARNs
    /// of IAM/STS principals removed. The full text goes to the log.
    pub fn status_message(&self) -> String {
        match self {
            Error::Aws {
                action,
                code,
                message,
                ..
            } => {
                if is_access_denied(code) {
                    format!(
                        "{action} failed: {code}: the operator's AWS identity is not allowed to call {action} (see `operator iam-policy`)"
                    )
                } else {
                    let short = short_aws_message(message);
                    if short.is_empty() {
                        format!("{action} failed: {code}")
                    } else {
                        format!("{action} failed: {code}: {short}")
                    }
                }
            }
            other => other.to_string(),
        }
    }

    /// The AWS error code, when this is an AWS error.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The [`crate::aws::FencedWrite`] somewhere in an SDK error's source chain.
fn fenced_write<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a crate::aws::FencedWrite> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(f) = e.downcast_ref::<crate::aws::FencedWrite>() {
            return Some(f);
        }
        cur = e.source();
    }
    None
}

/// First sentence of an AWS error message, at most 160 characters, with the
/// ARNs of IAM and STS principals replaced by `<principal>`.
fn short_aws_message(message: &str) -> String {
    let first = message
        .split_inclusive(". ")
        .next()
        .unwrap_or(message)
        .trim();
    let words: Vec<String> = first
        .split(' ')
        .map(|w| {
            if w.starts_with("arn:") && (w.contains(":iam::") || w.contains(":sts::")) {
                "<principal>".to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    let text = words.join(" ");
    if text.chars().count() <= 160 {
        return text;
    }
    let cut: String = text.chars().take(159).collect();
    format!("{cut}…")
}

fn is_access_denied(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "SignatureDoesNotMatch"
            | "AllAccessDisabled"
    )
}

fn is_throttle(code: &str) -> bool {
    code.contains("Throttl")
        || code == "SlowDown"
        || code == "RequestLimitExceeded"
        || code == "TooManyRequestsException"
}

/// Classify an AWS error code (and HTTP status when known).
pub fn classify(code: &str, status: Option<u16>) -> ErrorClass {
    if RETRYABLE_CODES.contains(&code) || status.is_some_and(|s| s >= 500) {
        ErrorClass::Retryable
    } else {
        ErrorClass::Stalled
    }
}

/// The AWS error code of an SDK error, if it is a service error.
pub fn sdk_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(code: &str, class: ErrorClass) -> Error {
        Error::Aws {
            action: "s3:PutBucketPolicy".into(),
            code: code.into(),
            message: "m".into(),
            class,
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify("ThrottlingException", None), ErrorClass::Retryable);
        assert_eq!(classify("SlowDown", Some(503)), ErrorClass::Retryable);
        assert_eq!(classify("Weird", Some(502)), ErrorClass::Retryable);
        assert_eq!(classify("AccessDenied", Some(403)), ErrorClass::Stalled);
        assert_eq!(classify("MalformedPolicy", Some(400)), ErrorClass::Stalled);
    }

    #[test]
    fn status_messages_are_short_and_name_no_principal() {
        let e = aws("AccessDenied", ErrorClass::Stalled);
        let m = e.status_message();
        assert!(
            m.starts_with("s3:PutBucketPolicy failed: AccessDenied"),
            "{m}"
        );
        let e = Error::Aws {
            action: "lambda:CreateFunction".into(),
            code: "InvalidParameterValueException".into(),
            message: format!(
                "The role arn:aws:iam::123456789012:role/op cannot be assumed. {}",
                "x".repeat(500)
            ),
            class: ErrorClass::Stalled,
        };
        let m = e.status_message();
        assert!(!m.contains("123456789012"), "{m}");
        assert!(m.contains("<principal>"), "{m}");
        assert!(m.len() < 260, "{m}");
        assert!(
            e.to_string().contains("123456789012"),
            "the log keeps everything"
        );
    }

    #[test]
    fn reasons() {
        assert_eq!(
            aws("AccessDenied", ErrorClass::Stalled).reason(),
            "AccessDenied"
        );
        assert_eq!(
            aws("ThrottlingException", ErrorClass::Retryable).reason(),
            "Throttled"
        );
        assert_eq!(
            aws("InternalError", ErrorClass::Retryable).reason(),
            "AWSRetrying"
        );
        assert_eq!(
            aws("MalformedPolicy", ErrorClass::Stalled).reason(),
            "InvalidValue"
        );
        let e = aws("AccessDenied", ErrorClass::Stalled);
        assert!(e.to_string().contains("s3:PutBucketPolicy"), "{e}");
        let c = Error::NameConflict {
            kind: "S3 bucket",
            name: "b".into(),
            owner: "not tagged by imagestack".into(),
        };
        assert_eq!(c.class(), ErrorClass::Stalled);
        assert_eq!(c.reason(), "NameConflict");
    }
}
