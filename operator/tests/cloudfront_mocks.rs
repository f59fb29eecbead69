//! CloudFront sequences the emulator cannot prove on its own, tested with the
//! SDK's own test support (aws-smithy-mocks): each rule answers one call, in
//! order (`RuleMode::Sequential` panics on any unexpected call), with modeled
//! outputs or with HTTP responses shaped like AWS's documented ones (REST-XML
//! bodies, `ETag` headers, `<ErrorResponse>` errors with their HTTP status).
//!
//! Covered: update reads a fresh ETag right before `UpdateDistribution` and
//! retries once on `PreconditionFailed` (412), keeping unmanaged fields;
//! a second 412 is a retryable error; a config read in AWS's wire shape is in
//! sync (zero writes) and `InProgress` is `CloudFrontDeploying`, not an error;
//! deletion disable → wait for `Deployed` → delete with the new ETag (and a
//! stale ETag re-read once); a crash after create is adopted through the
//! caller reference or `DistributionAlreadyExists`; a foreign distribution is
//! a name conflict and never written; origin access control update retry and
//! `OriginAccessControlInUse` during delete; an origin access control with
//! the description of the version before installation ids is adopted and
//! rewritten, one of another installation is a conflict; a 403 is
//! `AccessDenied` on reconcile and on delete (issue 8, S5).
//!
//! Everything runs through the generic driver (`driver::reconcile_one`,
//! `driver::delete_one`, or `Node::reconcile` where the outputs matter).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::operation::create_distribution_with_tags::CreateDistributionWithTagsOutput;
use aws_sdk_cloudfront::operation::get_distribution::GetDistributionOutput;
use aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigOutput;
use aws_sdk_cloudfront::operation::get_origin_access_control_config::GetOriginAccessControlConfigOutput;
use aws_sdk_cloudfront::operation::list_distributions::ListDistributionsOutput;
use aws_sdk_cloudfront::operation::list_origin_access_controls::ListOriginAccessControlsOutput;
use aws_sdk_cloudfront::operation::list_tags_for_resource::ListTagsForResourceOutput;
use aws_sdk_cloudfront::operation::update_distribution::UpdateDistributionOutput;
use aws_sdk_cloudfront::operation::update_origin_access_control::UpdateOriginAccessControlOutput;
use aws_sdk_cloudfront::types::{
    Distribution, DistributionConfig, DistributionList, DistributionSummary, HttpVersion,
    OriginAccessControlConfig, OriginAccessControlList, OriginAccessControlOriginTypes,
    OriginAccessControlSigningBehaviors, OriginAccessControlSigningProtocols,
    OriginAccessControlSummary, PriceClass, Tag, Tags,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::DateTime;
use aws_smithy_types::body::SdkBody;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::sdk_config::SharedCredentialsProvider;
use imagestack_contract::Format;
use imagestack_operator::aws::{AwsClients, CallCounter, CallStats};
use imagestack_operator::components::distribution::{
    self, DEFAULT_TTLS, DEPLOYING_REASON, DesiredDistribution, DistributionOutputs,
};
use imagestack_operator::components::origin_access::{self, DesiredOriginAccess};
use imagestack_operator::components::{Ctx, Deletion, Output, Resolved, State};
use imagestack_operator::driver::{self, Node, Outcome};
use imagestack_operator::error::{Error, ErrorClass};
use imagestack_operator::naming::{Ownership, StackId};

const ID: &str = "EDFDVBD6EXAMPLE";
const ARN: &str = "arn:aws:cloudfront::123456789012:distribution/EDFDVBD6EXAMPLE";
const DOMAIN: &str = "d111111abcdef8.cloudfront.net";
const OAC: &str = "E2QWRUHAPOMQZL";
const WEB_ACL: &str = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/ExampleWebACL/473e64fd-f30b-4765-81a0-62ad96dd167a";

fn stack() -> StackId {
    StackId::new("team-a", "images", "dev").in_cluster("cluster-a")
}

fn desired() -> DesiredDistribution {
    let buckets: Vec<(Format, String)> = Format::ALL
        .iter()
        .map(|f| (*f, format!("imagestack-dev-{}-0123456789ab", f.as_str())))
        .collect();
    distribution::desired(
        &stack(),
        "eu-west-1",
        &buckets,
        "PriceClass_100",
        DEFAULT_TTLS,
        stack().tags(&BTreeMap::from([("team".to_string(), "media".to_string())])),
    )
}

/// The desired distribution, with the id the stack's status reported.
fn known() -> DesiredDistribution {
    let mut d = desired();
    d.known_id = Some(ID.into());
    d
}

fn want() -> DistributionConfig {
    distribution::config(&desired(), OAC, distribution::CACHING_OPTIMIZED).unwrap()
}

/// Mocked CloudFront (counted like the operator's clients) plus inert clients for the rest.
struct Mocked {
    aws: AwsClients,
    stats: Arc<CallStats>,
    id: StackId,
    /// What the components before the distribution handed on: the OAC id.
    inputs: Resolved,
}

impl Mocked {
    fn new(rules: &[&Rule]) -> Self {
        let stats = Arc::new(CallStats::default());
        let counter = CallCounter(stats.clone());
        let cloudfront = mock_client!(
            aws_sdk_cloudfront,
            RuleMode::Sequential,
            rules,
            move |c: aws_sdk_cloudfront::config::Builder| c.interceptor(counter.clone())
        );
        // Never called: built from a dummy configuration.
        let cfg = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(
                aws_sdk_cloudfront::config::Credentials::new("AKID", "SECRET", None, None, "test"),
            ))
            .build();
        let aws = AwsClients {
            cloudfront,
            ..AwsClients::from_sdk_config(&cfg)
        };
        Self {
            aws,
            stats,
            id: stack(),
            inputs: Resolved {
                oac_id: Some(OAC.into()),
                ..Resolved::default()
            },
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            aws: &self.aws,
            id: &self.id,
            dry_run: false,
            inputs: &self.inputs,
        }
    }
}

/// An AWS error as CloudFront documents it (REST-XML `ErrorResponse`).
fn aws_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = format!(
        r#"<?xml version="1.0"?>
<ErrorResponse xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">
   <Error>
      <Type>Sender</Type>
      <Code>{code}</Code>
      <Message>{message}</Message>
   </Error>
   <RequestId>410c2a4b-e435-49c9-8382-3770d80d7d4c</RequestId>
</ErrorResponse>"#
    );
    let mut resp = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
    resp.headers_mut().insert("Content-Type", "text/xml");
    resp
}

fn precondition_failed() -> HttpResponse {
    aws_error(
        412,
        "PreconditionFailed",
        "The precondition given in one or more of the request-header fields evaluated to false.",
    )
}

fn no_content() -> HttpResponse {
    HttpResponse::new(StatusCode::try_from(204).unwrap(), SdkBody::empty())
}

fn distribution(cfg: DistributionConfig, status: &str) -> Distribution {
    Distribution::builder()
        .id(ID)
        .arn(ARN)
        .status(status)
        .last_modified_time(DateTime::from_secs(1_735_689_600))
        .in_progress_invalidation_batches(0)
        .domain_name(DOMAIN)
        .distribution_config(cfg)
        .build()
        .unwrap()
}

fn get_out(cfg: DistributionConfig, status: &str, etag: &str) -> GetDistributionOutput {
    GetDistributionOutput::builder()
        .distribution(distribution(cfg, status))
        .e_tag(etag)
        .build()
}

fn config_out(cfg: DistributionConfig, etag: &str) -> GetDistributionConfigOutput {
    GetDistributionConfigOutput::builder()
        .distribution_config(cfg)
        .e_tag(etag)
        .build()
}

fn update_out(cfg: DistributionConfig, etag: &str) -> UpdateDistributionOutput {
    UpdateDistributionOutput::builder()
        .distribution(distribution(cfg, "InProgress"))
        .e_tag(etag)
        .build()
}

fn tags_out(tags: &BTreeMap<String, String>) -> ListTagsForResourceOutput {
    let items: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
        .collect();
    ListTagsForResourceOutput::builder()
        .tags(Tags::builder().set_items(Some(items)).build())
        .build()
}

fn empty_list() -> ListDistributionsOutput {
    ListDistributionsOutput::builder()
        .distribution_list(
            DistributionList::builder()
                .marker("")
                .max_items(100)
                .is_truncated(false)
                .quantity(0)
                .build()
                .unwrap(),
        )
        .build()
}

fn get_rule(cfg: DistributionConfig, status: &'static str, etag: &'static str) -> Rule {
    mock!(Client::get_distribution)
        .match_requests(|r| r.id() == Some(ID))
        .then_output(move || get_out(cfg.clone(), status, etag))
}

fn config_rule(cfg: DistributionConfig, etag: &'static str) -> Rule {
    mock!(Client::get_distribution_config)
        .match_requests(|r| r.id() == Some(ID))
        .then_output(move || config_out(cfg.clone(), etag))
}

fn tags_rule(tags: BTreeMap<String, String>) -> Rule {
    mock!(Client::list_tags_for_resource)
        .match_requests(|r| r.resource() == Some(ARN))
        .then_output(move || tags_out(&tags))
}

fn with<F: FnOnce(&mut DistributionConfig)>(
    mut cfg: DistributionConfig,
    f: F,
) -> DistributionConfig {
    f(&mut cfg);
    cfg
}

fn deploying(state: &State) -> bool {
    matches!(state, State::Progressing { reason, .. } if reason == DEPLOYING_REASON)
}

/// The distribution as it was created (caller reference of its own, a WAF
/// ACL attached out of band), with the price class drifted.
fn drifted() -> DistributionConfig {
    with(want(), |c| {
        c.price_class = Some(PriceClass::PriceClassAll);
        c.web_acl_id = Some(WEB_ACL.into());
    })
}

#[tokio::test]
async fn update_reads_a_fresh_etag_and_retries_once_on_precondition_failed() {
    let d = known();
    let get = get_rule(drifted(), "Deployed", "E1");
    let tags = tags_rule(d.tags.clone());
    let read1 = config_rule(drifted(), "E1");
    let stale = mock!(Client::update_distribution)
        .match_requests(|r| r.if_match() == Some("E1"))
        .then_http_response(precondition_failed);
    // Someone else wrote in between: a new ETag, and HTTP/2 only now.
    let read2 = config_rule(
        with(drifted(), |c| c.http_version = Some(HttpVersion::Http2)),
        "E2",
    );
    let caller_reference = d.caller_reference.clone();
    let update = mock!(Client::update_distribution)
        .match_requests(move |r| {
            let Some(c) = r.distribution_config() else {
                return false;
            };
            r.id() == Some(ID)
                && r.if_match() == Some("E2")
                && c.price_class() == Some(&PriceClass::PriceClass100)
                && c.http_version() == Some(&HttpVersion::Http2and3)
                // Unmanaged fields are sent back as read; the caller reference never changes.
                && c.web_acl_id() == Some(WEB_ACL)
                && c.caller_reference() == caller_reference
        })
        .then_output(|| update_out(want(), "E3"));
    let m = Mocked::new(&[&get, &tags, &read1, &stale, &read2, &update]);

    let cx = m.ctx();
    let (outcome, id, outputs) = Node::reconcile(&d, &cx).await;
    let Outcome::Progressing {
        created: false,
        changes,
        progress,
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    // The changes of the write that succeeded (on the second, fresh read).
    let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "httpVersion: http2 → http2and3",
            "priceClass: PriceClass_All → PriceClass_100"
        ]
    );
    assert_eq!(progress.reason, DEPLOYING_REASON);
    assert_eq!(id, ARN);
    assert_eq!(
        outputs,
        [Output::Distribution(DistributionOutputs {
            id: ID.into(),
            arn: ARN.into(),
            domain: DOMAIN.into(),
        })]
    );
    for rule in [&get, &tags, &read1, &stale, &read2, &update] {
        assert_eq!(rule.num_calls(), 1);
    }
    assert_eq!(m.stats.writes(), 2, "{:?}", m.stats.write_operations());
}

#[tokio::test]
async fn a_second_precondition_failure_is_a_retryable_error() {
    let d = known();
    let get = get_rule(drifted(), "Deployed", "E1");
    let tags = tags_rule(d.tags.clone());
    let read1 = config_rule(drifted(), "E1");
    let stale1 = mock!(Client::update_distribution).then_http_response(precondition_failed);
    let read2 = config_rule(drifted(), "E2");
    let stale2 = mock!(Client::update_distribution).then_http_response(precondition_failed);
    let m = Mocked::new(&[&get, &tags, &read1, &stale1, &read2, &stale2]);
    let err = driver::reconcile_one(&m.ctx(), &d).await.unwrap_err();
    assert_eq!(err.aws_code(), Some("PreconditionFailed"), "{err}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(m.stats.writes(), 2);
}

/// `GetDistribution` exactly as AWS sends it for our configuration: method
/// lists in AWS's order (HEAD before GET), AWS's defaults for everything we
/// do not set, `ETag` header.
fn wire_distribution(status: &str, etag: &str) -> HttpResponse {
    let d = desired();
    let behavior = |target: &str| {
        format!(
            "<TargetOriginId>{target}</TargetOriginId>\
             <TrustedSigners><Enabled>false</Enabled><Quantity>0</Quantity></TrustedSigners>\
             <TrustedKeyGroups><Enabled>false</Enabled><Quantity>0</Quantity></TrustedKeyGroups>\
             <ViewerProtocolPolicy>redirect-to-https</ViewerProtocolPolicy>\
             <AllowedMethods><Quantity>3</Quantity><Items><Method>HEAD</Method><Method>GET</Method><Method>OPTIONS</Method></Items>\
             <CachedMethods><Quantity>2</Quantity><Items><Method>HEAD</Method><Method>GET</Method></Items></CachedMethods></AllowedMethods>\
             <SmoothStreaming>false</SmoothStreaming><Compress>true</Compress>\
             <LambdaFunctionAssociations><Quantity>0</Quantity></LambdaFunctionAssociations>\
             <FunctionAssociations><Quantity>0</Quantity></FunctionAssociations>\
             <FieldLevelEncryptionId></FieldLevelEncryptionId>\
             <GrpcConfig><Enabled>false</Enabled></GrpcConfig>\
             <CachePolicyId>658327ea-f89d-4fab-a63d-7e88639e58f6</CachePolicyId>"
        )
    };
    let origins: String = d
        .origins
        .iter()
        .map(|(f, _, domain)| {
            format!(
                "<Origin><Id>s3-{f}</Id><DomainName>{domain}</DomainName><OriginPath></OriginPath>\
                 <CustomHeaders><Quantity>0</Quantity></CustomHeaders>\
                 <S3OriginConfig><OriginAccessIdentity></OriginAccessIdentity><OriginReadTimeout>30</OriginReadTimeout></S3OriginConfig>\
                 <ConnectionAttempts>3</ConnectionAttempts><ConnectionTimeout>10</ConnectionTimeout>\
                 <OriginShield><Enabled>false</Enabled></OriginShield>\
                 <OriginAccessControlId>{OAC}</OriginAccessControlId></Origin>"
            )
        })
        .collect();
    let behaviors: String = d
        .origins
        .iter()
        .map(|(f, _, _)| {
            format!(
                "<CacheBehavior><PathPattern>/{f}/*</PathPattern>{}</CacheBehavior>",
                behavior(&format!("s3-{f}"))
            )
        })
        .collect();
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Distribution xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">
<Id>{ID}</Id><ARN>{ARN}</ARN><Status>{status}</Status>
<LastModifiedTime>2025-01-01T00:00:00.000Z</LastModifiedTime>
<InProgressInvalidationBatches>0</InProgressInvalidationBatches>
<DomainName>{DOMAIN}</DomainName>
<ActiveTrustedSigners><Enabled>false</Enabled><Quantity>0</Quantity></ActiveTrustedSigners>
<ActiveTrustedKeyGroups><Enabled>false</Enabled><Quantity>0</Quantity></ActiveTrustedKeyGroups>
<DistributionConfig>
<CallerReference>{cr}</CallerReference>
<Aliases><Quantity>0</Quantity></Aliases>
<DefaultRootObject></DefaultRootObject>
<Origins><Quantity>3</Quantity><Items>{origins}</Items></Origins>
<OriginGroups><Quantity>0</Quantity></OriginGroups>
<DefaultCacheBehavior>{default}</DefaultCacheBehavior>
<CacheBehaviors><Quantity>3</Quantity><Items>{behaviors}</Items></CacheBehaviors>
<CustomErrorResponses><Quantity>0</Quantity></CustomErrorResponses>
<Comment>{comment}</Comment>
<Logging><Enabled>false</Enabled><IncludeCookies>false</IncludeCookies><Bucket></Bucket><Prefix></Prefix></Logging>
<PriceClass>PriceClass_100</PriceClass>
<Enabled>true</Enabled>
<ViewerCertificate><CloudFrontDefaultCertificate>true</CloudFrontDefaultCertificate><SSLSupportMethod>vip</SSLSupportMethod><MinimumProtocolVersion>TLSv1</MinimumProtocolVersion><CertificateSource>cloudfront</CertificateSource></ViewerCertificate>
<Restrictions><GeoRestriction><RestrictionType>none</RestrictionType><Quantity>0</Quantity></GeoRestriction></Restrictions>
<WebACLId></WebACLId>
<HttpVersion>http2and3</HttpVersion>
<IsIPV6Enabled>true</IsIPV6Enabled>
<ContinuousDeploymentPolicyId></ContinuousDeploymentPolicyId>
<Staging>false</Staging>
</DistributionConfig>
</Distribution>"#,
        cr = d.caller_reference,
        comment = d.comment,
        default = behavior("s3-webp"),
    );
    let mut resp = HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(body));
    resp.headers_mut().insert("ETag", etag.to_string());
    resp.headers_mut().insert("Content-Type", "text/xml");
    resp
}

#[tokio::test]
async fn aws_shaped_config_is_in_sync_and_in_progress_is_deploying_not_an_error() {
    let d = known();
    let deploying_read = mock!(Client::get_distribution)
        .match_requests(|r| r.id() == Some(ID))
        .then_http_response(|| wire_distribution("InProgress", "E1"));
    let tags1 = tags_rule(d.tags.clone());
    let deployed_read = mock!(Client::get_distribution)
        .match_requests(|r| r.id() == Some(ID))
        .then_http_response(|| wire_distribution("Deployed", "E1"));
    let tags2 = tags_rule(d.tags.clone());
    let m = Mocked::new(&[&deploying_read, &tags1, &deployed_read, &tags2]);

    let report = driver::reconcile_one(&m.ctx(), &d).await.unwrap();
    assert!(report.changes.is_empty(), "{report:?}");
    assert!(deploying(&report.state), "{report:?}");
    assert_eq!(report.id, ARN);
    let report = driver::reconcile_one(&m.ctx(), &d).await.unwrap();
    assert_eq!(report.state, State::Ready, "{report:?}");
    assert!(report.changes.is_empty());
    assert_eq!(m.stats.writes(), 0, "{:?}", m.stats.write_operations());
}

#[tokio::test]
async fn delete_disables_waits_for_deployed_then_deletes_with_the_new_etag() {
    let d = known();
    let disabled = with(want(), |c| c.enabled = false);
    // Pass 1: enabled → disable with the fresh ETag.
    let get1 = get_rule(want(), "Deployed", "E1");
    let tags1 = tags_rule(d.tags.clone());
    let read1 = config_rule(want(), "E1");
    let disable = mock!(Client::update_distribution)
        .match_requests(|r| {
            r.if_match() == Some("E1") && r.distribution_config().is_some_and(|c| !c.enabled())
        })
        .then_output({
            let disabled = disabled.clone();
            move || update_out(disabled.clone(), "E2")
        });
    // Pass 2: disabled, still InProgress → wait.
    let get2 = get_rule(disabled.clone(), "InProgress", "E2");
    let tags2 = tags_rule(d.tags.clone());
    // Pass 3: Deployed → delete; the ETag went stale in between → read again, delete with the new one.
    let get3 = get_rule(disabled.clone(), "Deployed", "E3");
    let tags3 = tags_rule(d.tags.clone());
    let stale = mock!(Client::delete_distribution)
        .match_requests(|r| r.id() == Some(ID) && r.if_match() == Some("E3"))
        .then_http_response(precondition_failed);
    let reread = get_rule(disabled.clone(), "Deployed", "E4");
    let delete = mock!(Client::delete_distribution)
        .match_requests(|r| r.id() == Some(ID) && r.if_match() == Some("E4"))
        .then_http_response(no_content);
    // Pass 4: gone (by id, and nothing to find by caller reference).
    let gone = mock!(Client::get_distribution).then_http_response(|| {
        aws_error(
            404,
            "NoSuchDistribution",
            "The specified distribution does not exist.",
        )
    });
    let list = mock!(Client::list_distributions).then_output(empty_list);
    let m = Mocked::new(&[
        &get1, &tags1, &read1, &disable, &get2, &tags2, &get3, &tags3, &stale, &reread, &delete,
        &gone, &list,
    ]);

    let step = driver::delete_one(&m.ctx(), &d).await.unwrap();
    match &step {
        Deletion::InProgress(msg) => assert!(msg.starts_with("step 1/3: disabling"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let step = driver::delete_one(&m.ctx(), &d).await.unwrap();
    match &step {
        Deletion::InProgress(msg) => {
            assert!(msg.starts_with("step 2/3: waiting"), "{msg}");
            assert!(msg.contains("InProgress"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        driver::delete_one(&m.ctx(), &d).await.unwrap(),
        Deletion::Gone
    );
    assert_eq!(
        driver::delete_one(&m.ctx(), &d).await.unwrap(),
        Deletion::Absent
    );
    assert_eq!(delete.num_calls(), 1);
    assert_eq!(list.num_calls(), 1);
    // One disable, two delete attempts; never a delete while enabled (Sequential would panic).
    assert_eq!(m.stats.writes(), 3, "{:?}", m.stats.write_operations());
}

fn summary_with_our_comment() -> ListDistributionsOutput {
    let d = desired();
    let c = want();
    let summary = DistributionSummary::builder()
        .id(ID)
        .arn(ARN)
        .e_tag("E1")
        .status("Deployed")
        .last_modified_time(DateTime::from_secs(1_735_689_600))
        .domain_name(DOMAIN)
        .set_aliases(c.aliases.clone())
        .set_origins(c.origins.clone())
        .set_default_cache_behavior(c.default_cache_behavior.clone())
        .set_cache_behaviors(c.cache_behaviors.clone())
        .comment(d.comment)
        .price_class(PriceClass::PriceClass100)
        .enabled(true)
        .web_acl_id("")
        .http_version(HttpVersion::Http2and3)
        .is_ipv6_enabled(true)
        .staging(false)
        .build()
        .unwrap();
    ListDistributionsOutput::builder()
        .distribution_list(
            DistributionList::builder()
                .marker("")
                .max_items(100)
                .is_truncated(false)
                .quantity(1)
                .items(summary)
                .build()
                .unwrap(),
        )
        .build()
}

#[tokio::test]
async fn crash_after_create_finds_the_distribution_by_caller_reference() {
    // Status lost (crash before it was written): no known id.
    let d = desired();
    let list = mock!(Client::list_distributions).then_output(summary_with_our_comment);
    let check = config_rule(want(), "E1");
    let get = get_rule(want(), "Deployed", "E1");
    let tags = tags_rule(d.tags.clone());
    let m = Mocked::new(&[&list, &check, &get, &tags]);
    let report = driver::reconcile_one(&m.ctx(), &d).await.unwrap();
    assert_eq!(report.state, State::Ready, "{report:?}");
    assert!(!report.created);
    assert_eq!(report.id, ARN);
    assert_eq!(m.stats.writes(), 0);
}

#[tokio::test]
async fn create_with_a_taken_caller_reference_adopts_the_existing_distribution() {
    // The list does not show it yet (eventual consistency): create → DistributionAlreadyExists.
    let d = desired();
    let list = mock!(Client::list_distributions).then_output(empty_list);
    let caller_reference = d.caller_reference.clone();
    let create = mock!(Client::create_distribution_with_tags)
        .match_requests(move |r| {
            r.distribution_config_with_tags().is_some_and(|w| {
                w.distribution_config()
                    .is_some_and(|c| c.caller_reference() == caller_reference)
                    && w.tags().is_some_and(|t| !t.items().is_empty())
            })
        })
        .then_http_response(|| {
            aws_error(
                409,
                "DistributionAlreadyExists",
                "The caller reference that you are using to create a distribution is associated with another distribution. Already exists: EDFDVBD6EXAMPLE",
            )
        });
    let get = get_rule(want(), "Deployed", "E1");
    let tags = tags_rule(d.tags.clone());
    let m = Mocked::new(&[&list, &create, &get, &tags]);
    let report = driver::reconcile_one(&m.ctx(), &d).await.unwrap();
    assert_eq!(report.state, State::Ready, "{report:?}");
    assert_eq!(report.id, ARN, "observed through the id the error names");
    assert_eq!(create.num_calls(), 1);
    assert_eq!(m.stats.writes(), 1, "only the rejected create");

    // And a genuinely new one: created with tags, Progressing while deploying.
    let d = desired();
    let list = mock!(Client::list_distributions).then_output(empty_list);
    let create = mock!(Client::create_distribution_with_tags).then_output(|| {
        CreateDistributionWithTagsOutput::builder()
            .distribution(distribution(want(), "InProgress"))
            .e_tag("E1")
            .location(format!(
                "https://cloudfront.amazonaws.com/2020-05-31/distribution/{ID}"
            ))
            .build()
    });
    let m = Mocked::new(&[&list, &create]);
    let report = driver::reconcile_one(&m.ctx(), &d).await.unwrap();
    assert!(report.created);
    assert!(deploying(&report.state), "{report:?}");
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn a_foreign_distribution_is_a_name_conflict_and_never_written() {
    let d = known();
    let foreign = BTreeMap::from([("owner".to_string(), "someone".to_string())]);
    let get = get_rule(drifted(), "Deployed", "E1");
    let tags = tags_rule(foreign.clone());
    let get2 = get_rule(drifted(), "Deployed", "E1");
    let tags2 = tags_rule(foreign);
    let m = Mocked::new(&[&get, &tags, &get2, &tags2]);
    let err = driver::reconcile_one(&m.ctx(), &d).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict { .. }), "{err}");
    assert_eq!(
        driver::delete_one(&m.ctx(), &d).await.unwrap(),
        Deletion::Absent,
        "left alone"
    );
    assert_eq!(m.stats.writes(), 0);
}

fn oac_list(behavior: &str) -> ListOriginAccessControlsOutput {
    oac_list_described(behavior, &origin_access::desired(&stack()).description)
}

fn oac_list_described(behavior: &str, description: &str) -> ListOriginAccessControlsOutput {
    let d = origin_access::desired(&stack());
    let summary = OriginAccessControlSummary::builder()
        .id(OAC)
        .name(d.name)
        .description(description)
        .signing_protocol(OriginAccessControlSigningProtocols::Sigv4)
        .signing_behavior(OriginAccessControlSigningBehaviors::from(behavior))
        .origin_access_control_origin_type(OriginAccessControlOriginTypes::S3)
        .build()
        .unwrap();
    ListOriginAccessControlsOutput::builder()
        .origin_access_control_list(
            OriginAccessControlList::builder()
                .marker("")
                .max_items(100)
                .is_truncated(false)
                .quantity(1)
                .items(summary)
                .build()
                .unwrap(),
        )
        .build()
}

fn oac_config_rule(etag: &'static str) -> Rule {
    oac_config_rule_described(etag, origin_access::desired(&stack()).description)
}

fn oac_config_rule_described(etag: &'static str, description: String) -> Rule {
    mock!(Client::get_origin_access_control_config)
        .match_requests(|r| r.id() == Some(OAC))
        .then_output(move || {
            let d = origin_access::desired(&stack());
            GetOriginAccessControlConfigOutput::builder()
                .origin_access_control_config(
                    OriginAccessControlConfig::builder()
                        .name(d.name)
                        .description(description.clone())
                        .signing_protocol(OriginAccessControlSigningProtocols::Sigv4)
                        .signing_behavior(OriginAccessControlSigningBehaviors::Never)
                        .origin_access_control_origin_type(OriginAccessControlOriginTypes::S3)
                        .build()
                        .unwrap(),
                )
                .e_tag(etag)
                .build()
        })
}

#[tokio::test]
async fn origin_access_control_update_retries_once_and_delete_waits_while_in_use() {
    let d = origin_access::desired(&stack());
    let list = mock!(Client::list_origin_access_controls).then_output(|| oac_list("never"));
    let read1 = oac_config_rule("O1");
    let stale = mock!(Client::update_origin_access_control)
        .match_requests(|r| r.if_match() == Some("O1"))
        .then_http_response(precondition_failed);
    let read2 = oac_config_rule("O2");
    let update = mock!(Client::update_origin_access_control)
        .match_requests(|r| {
            r.if_match() == Some("O2")
                && r.origin_access_control_config().is_some_and(|c| {
                    c.signing_behavior() == &OriginAccessControlSigningBehaviors::Always
                })
        })
        .then_output(|| {
            UpdateOriginAccessControlOutput::builder()
                .e_tag("O3")
                .build()
        });
    // Delete while the distribution still uses it, then once it is gone.
    let list2 = mock!(Client::list_origin_access_controls).then_output(|| oac_list("always"));
    let read3 = oac_config_rule("O3");
    let in_use = mock!(Client::delete_origin_access_control)
        .match_requests(|r| r.if_match() == Some("O3"))
        .then_http_response(|| {
            aws_error(
                409,
                "OriginAccessControlInUse",
                "Cannot delete this origin access control because it's in use by one or more origins.",
            )
        });
    let list3 = mock!(Client::list_origin_access_controls).then_output(|| oac_list("always"));
    let read4 = oac_config_rule("O3");
    let delete = mock!(Client::delete_origin_access_control)
        .match_requests(|r| r.id() == Some(OAC) && r.if_match() == Some("O3"))
        .then_http_response(no_content);
    let m = Mocked::new(&[
        &list, &read1, &stale, &read2, &update, &list2, &read3, &in_use, &list3, &read4, &delete,
    ]);

    let report = driver::reconcile_one(&m.ctx(), &d).await.unwrap();
    assert_eq!(report.id, OAC);
    assert_eq!(
        report
            .changes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["signingBehavior: never → always"]
    );
    match driver::delete_one(&m.ctx(), &d).await.unwrap() {
        Deletion::InProgress(msg) => assert!(msg.contains("still used"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        driver::delete_one(&m.ctx(), &d).await.unwrap(),
        Deletion::Gone
    );
    assert_eq!(update.num_calls(), 1);
    assert_eq!(delete.num_calls(), 1);
    assert_eq!(m.stats.writes(), 4, "{:?}", m.stats.write_operations());
}

#[tokio::test]
async fn a_legacy_origin_access_control_is_adopted_and_one_of_another_cluster_is_left_alone() {
    let d: DesiredOriginAccess = origin_access::desired(&stack());
    assert_eq!(d.description, "imagestack team-a/images cluster=cluster-a");
    // Written by the version before installation ids: ours; the description
    // is rewritten with the cluster id (after a fresh read that still says so).
    let legacy = "imagestack team-a/images";
    let list = mock!(Client::list_origin_access_controls)
        .then_output(move || oac_list_described("always", legacy));
    let read = oac_config_rule_described("O1", legacy.to_string());
    let want = d.description.clone();
    let update = mock!(Client::update_origin_access_control)
        .match_requests(move |r| {
            r.if_match() == Some("O1")
                && r.origin_access_control_config().is_some_and(|c| {
                    c.description() == Some(want.as_str())
                        && c.signing_behavior() == &OriginAccessControlSigningBehaviors::Always
                })
        })
        .then_output(|| {
            UpdateOriginAccessControlOutput::builder()
                .e_tag("O2")
                .build()
        });
    // Same namespace/name, another installation: a conflict, nothing written,
    // and deleting this stack leaves it in place.
    let theirs = "imagestack team-a/images cluster=cluster-b";
    let list2 = mock!(Client::list_origin_access_controls)
        .then_output(move || oac_list_described("never", theirs));
    let list3 = mock!(Client::list_origin_access_controls)
        .then_output(move || oac_list_described("never", theirs));
    let m = Mocked::new(&[&list, &read, &update, &list2, &list3]);

    let report = driver::reconcile_one(&m.ctx(), &d).await.unwrap();
    assert_eq!(report.state, State::Ready, "{report:?}");
    assert_eq!(
        report
            .changes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["description: imagestack team-a/images → imagestack team-a/images cluster=cluster-a"]
    );
    assert_eq!(update.num_calls(), 1);

    let err = driver::reconcile_one(&m.ctx(), &d).await.unwrap_err();
    assert_eq!(err.reason(), "NameConflict", "{err}");
    assert!(err.to_string().contains("cluster-b"), "{err}");
    assert_eq!(
        origin_access::description_ownership(&stack(), theirs),
        Ownership::OtherCluster("cluster-b".into())
    );
    assert_eq!(
        driver::delete_one(&m.ctx(), &d).await.unwrap(),
        Deletion::Absent,
        "left in place"
    );
    assert_eq!(m.stats.writes(), 1, "{:?}", m.stats.write_operations());
}

fn access_denied(action: &'static str) -> impl Fn() -> HttpResponse {
    move || {
        aws_error(
            403,
            "AccessDenied",
            &format!(
                "User: arn:aws:sts::123456789012:assumed-role/imagestack-operator/op is not authorized to perform: {action}"
            ),
        )
    }
}

/// S5: a 403 is `AccessDenied` (Stalled, naming the action), never "missing"
/// nor "not ours" — on reconcile and on delete, so deletion keeps the
/// finalizer instead of forgetting the resource.
#[tokio::test]
async fn access_denied_fails_reconcile_and_delete() {
    let oac = origin_access::desired(&stack());
    let dist = known();
    let list_oac = || {
        mock!(Client::list_origin_access_controls)
            .then_http_response(access_denied("cloudfront:ListOriginAccessControls"))
    };
    let get_dist = || {
        mock!(Client::get_distribution)
            .match_requests(|r| r.id() == Some(ID))
            .then_http_response(access_denied("cloudfront:GetDistribution"))
    };
    // Without an error body (as a HEAD-like empty 403 would come).
    let list_dist_bare = mock!(Client::list_distributions).then_http_response(|| {
        HttpResponse::new(StatusCode::try_from(403).unwrap(), SdkBody::empty())
    });
    let (r1, r2, r3, r4) = (list_oac(), list_oac(), get_dist(), get_dist());
    let m = Mocked::new(&[&r1, &r2, &r3, &r4, &list_dist_bare]);

    let check = |e: Error, action: &str| {
        assert_eq!(e.reason(), "AccessDenied", "{e}");
        assert_eq!(e.class(), ErrorClass::Stalled, "{e}");
        let msg = e.status_message();
        assert!(msg.contains(action), "{msg}");
        assert!(
            !msg.contains("123456789012"),
            "no principal on status: {msg}"
        );
    };
    check(
        driver::reconcile_one(&m.ctx(), &oac).await.unwrap_err(),
        "cloudfront:ListOriginAccessControls",
    );
    check(
        driver::delete_one(&m.ctx(), &oac).await.unwrap_err(),
        "cloudfront:ListOriginAccessControls",
    );
    check(
        driver::reconcile_one(&m.ctx(), &dist).await.unwrap_err(),
        "cloudfront:GetDistribution",
    );
    check(
        driver::delete_one(&m.ctx(), &dist).await.unwrap_err(),
        "cloudfront:GetDistribution",
    );
    // No known id: the search by caller reference is denied the same way.
    check(
        driver::delete_one(&m.ctx(), &desired()).await.unwrap_err(),
        "cloudfront:ListDistributions",
    );
    assert_eq!(m.stats.writes(), 0);
}
