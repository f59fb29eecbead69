//! The data path of a stack, driven the way AWS drives it: an object is
//! uploaded to the upload bucket, the S3 event the bucket's notification
//! would send is delivered to the real `bootstrap` binary through a Lambda
//! Runtime API server, configured exactly as the deployed function is
//! (its environment variables and memory read back from Lambda), and the
//! result is read back: the metadata item, the renditions, and the route each
//! rendition's CDN path takes through the distribution to its bucket.
//!
//! Used by the end-to-end tests and by `demo` (which `./scripts/up` runs).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use aws_sdk_dynamodb::types::AttributeValue;
use imagestack_contract::Format;
use imagestack_contract::table::{self, attr};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::lambda_runtime_api::{Outcome, RuntimeApi};

/// How long one invocation may take before the test gives up on it.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);

/// The `bootstrap` binary (`IMAGESTACK_BOOTSTRAP_BIN`, else the workspace build).
pub fn bootstrap_bin() -> Result<PathBuf> {
    crate::workspace_bin(
        "bootstrap",
        "IMAGESTACK_BOOTSTRAP_BIN",
        "`cargo build -p imagestack-processor --bin bootstrap` builds it",
    )
}

/// A directory holding the shipped processor zips (`x86_64.zip`, `arm64.zip`,
/// as the container image holds them): when set, the tests deploy and run
/// those instead of the workspace's debug build ([`bootstrap_command`],
/// [`crate::artifact_dir`]).
pub const SHIPPED_ZIPS: &str = "IMAGESTACK_SHIPPED_ZIPS";
/// Which shipped zip's `bootstrap` runs: `x86_64` (default) or `arm64` (under
/// `qemu-aarch64` on another host, with Debian's aarch64 glibc).
pub const SHIPPED_ARCH: &str = "IMAGESTACK_SHIPPED_ARCH";

/// The shipped zips' directory, when [`SHIPPED_ZIPS`] is set.
pub fn shipped_zips() -> Option<PathBuf> {
    std::env::var_os(SHIPPED_ZIPS)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The architecture of the shipped zip that runs ([`SHIPPED_ARCH`]).
pub fn shipped_arch() -> Result<String> {
    let arch = std::env::var(SHIPPED_ARCH).unwrap_or_else(|_| "x86_64".into());
    ensure!(
        arch == "x86_64" || arch == "arm64",
        "{SHIPPED_ARCH} must be x86_64 or arm64, not {arch:?}"
    );
    Ok(arch)
}

/// How to start the function: the program and its leading arguments. The
/// workspace's `bootstrap` ([`bootstrap_bin`]), or, with [`SHIPPED_ZIPS`],
/// the `bootstrap` extracted from the shipped zip of [`shipped_arch`]
/// (checked to be an ELF for that architecture; arm64 runs under
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu` unless the host is aarch64).
pub fn bootstrap_command() -> Result<(PathBuf, Vec<OsString>)> {
    let Some(dir) = shipped_zips() else {
        return Ok((bootstrap_bin()?, Vec::new()));
    };
    let arch = shipped_arch()?;
    let bin = shipped_bootstrap(&dir, &arch)?;
    if arch == "arm64" && std::env::consts::ARCH != "aarch64" {
        let qemu = PathBuf::from("qemu-aarch64");
        return Ok((
            qemu,
            vec!["-L".into(), "/usr/aarch64-linux-gnu".into(), bin.into()],
        ));
    }
    Ok((bin, Vec::new()))
}

/// The `bootstrap` of `<dir>/<arch>.zip`, extracted once per process and
/// checked to be an ELF for `arch`.
fn shipped_bootstrap(dir: &std::path::Path, arch: &str) -> Result<PathBuf> {
    static EXTRACTED: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut extracted = EXTRACTED
        .lock()
        .map_err(|_| anyhow::anyhow!("shipped bootstrap lock poisoned"))?;
    if let Some(bin) = extracted.as_ref() {
        return Ok(bin.clone());
    }
    let zip = dir.join(format!("{arch}.zip"));
    let out =
        std::env::temp_dir().join(format!("imagestack-shipped-{arch}-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('bootstrap', sys.argv[2])",
        ])
        .arg(&zip)
        .arg(&out)
        .status()
        .context("python3 (extracting bootstrap)")?;
    ensure!(status.success(), "no bootstrap in {}", zip.display());
    let bin = out.join("bootstrap");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let head = std::fs::read(&bin)?;
    ensure!(
        head.len() > 20 && head[..4] == *b"\x7fELF",
        "{}: bootstrap is not an ELF",
        zip.display()
    );
    let machine = u16::from_le_bytes([head[18], head[19]]);
    let want = if arch == "arm64" { 0xB7 } else { 0x3E };
    ensure!(
        machine == want,
        "{}: bootstrap is for ELF machine {machine:#x}, not {arch}",
        zip.display()
    );
    *extracted = Some(bin.clone());
    Ok(bin)
}

/// An image from ../shared/images (or `IMAGESTACK_TEST_IMAGES`).
pub fn shared_image(name: &str) -> Result<Vec<u8>> {
    let dir = std::env::var("IMAGESTACK_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::repo_root().join("../shared/images"));
    std::fs::read(dir.join(name)).with_context(|| format!("{}/{name}", dir.display()))
}

/// Encode a key as S3 does in event notifications: form encoding, UTF-8.
pub fn s3_event_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// An `ObjectCreated:Put` event as S3 delivers it (`event_time` RFC 3339).
pub fn s3_event(
    region: &str,
    bucket: &str,
    key: &str,
    size: usize,
    etag: &str,
    event_time: &str,
) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": event_time,
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "imagestack-upload",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": s3_event_key(key), "size": size, "eTag": etag, "sequencer": "0055AED6DCD90281E5"}
        }
    }]})
}

/// Now, as S3 writes `eventTime`.
pub fn event_time_now() -> String {
    aws_sdk_s3::primitives::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Upload `body` under `key` and return the event S3 sends for it.
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    region: &str,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<Value> {
    upload_at(s3, region, bucket, key, body, &event_time_now()).await
}

/// [`upload`], with the event's `eventTime` given.
pub async fn upload_at(
    s3: &aws_sdk_s3::Client,
    region: &str,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    event_time: &str,
) -> Result<Value> {
    let size = body.len();
    let put = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .with_context(|| format!("upload s3://{bucket}/{key}"))?;
    let etag = put
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    Ok(s3_event(region, bucket, key, size, &etag, event_time))
}

/// The function as a child process under a Runtime API; its stdout and
/// stderr lines are collected.
pub struct Function {
    child: tokio::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Function {
    /// Start `bootstrap` with the Lambda runtime variables, `memory_mb` and
    /// the function's own environment `vars`.
    pub fn start<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        api: &RuntimeApi,
        name: &str,
        memory_mb: i32,
        vars: &[(K, V)],
    ) -> Result<Self> {
        let (program, args) = bootstrap_command()?;
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {} {args:?}", program.display()))?;
        let collect = |lines: Arc<Mutex<Vec<String>>>,
                       stream: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        };
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(
            Arc::clone(&stdout),
            Box::new(child.stdout.take().context("stdout")?),
        );
        collect(
            Arc::clone(&stderr),
            Box::new(child.stderr.take().context("stderr")?),
        );
        Ok(Function {
            child,
            stdout,
            stderr,
        })
    }

    /// Start it configured as the deployed function.
    pub fn start_as(api: &RuntimeApi, deployed: &Deployed) -> Result<Self> {
        Self::start(api, &deployed.name, deployed.memory_mb, &deployed.env)
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// EMF documents printed so far.
    pub fn emf(&self) -> Vec<Value> {
        self.stdout()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("_aws").is_some())
            .collect()
    }

    /// Wait for the process to exit.
    pub async fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(timeout, self.child.wait()).await??)
    }
}

/// Deliver `event` and return the function's response (an invocation error
/// is an `Err` carrying the function's log).
pub async fn invoke(api: &RuntimeApi, function: &Function, event: Value) -> Result<Value> {
    match api.invoke(event, INVOKE_TIMEOUT).await {
        Ok(Outcome::Response(v)) => Ok(v),
        Ok(Outcome::Error(e)) => bail!("invocation failed: {e}\nlogs:\n{}", function.logs()),
        Err(e) => bail!("{e}\nlogs:\n{}", function.logs()),
    }
}

/// The deployed function's configuration, as Lambda would start it.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub name: String,
    pub arn: String,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    pub architecture: String,
    pub env: Vec<(String, String)>,
}

impl Deployed {
    /// One environment variable of the function.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read the function's configuration (`GetFunctionConfiguration`).
pub async fn deployed_function(lambda: &aws_sdk_lambda::Client, name: &str) -> Result<Deployed> {
    let c = lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .with_context(|| format!("lambda:GetFunctionConfiguration {name}"))?;
    let mut env: Vec<(String, String)> = c
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    env.sort();
    Ok(Deployed {
        name: name.to_string(),
        arn: c.function_arn().unwrap_or_default().to_string(),
        memory_mb: c.memory_size().unwrap_or(128),
        timeout_seconds: c.timeout().unwrap_or(3),
        architecture: c
            .architectures()
            .first()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
        env,
    })
}

/// Whether the bucket's notification configuration sends `ObjectCreated`
/// events for `key` to `function_arn` (prefix/suffix filters applied as S3
/// does: case-sensitive).
pub async fn notification_routes(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    function_arn: &str,
) -> Result<bool> {
    let cfg = s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
        .with_context(|| format!("s3:GetBucketNotificationConfiguration {bucket}"))?;
    Ok(cfg.lambda_function_configurations().iter().any(|c| {
        let created = c
            .events()
            .iter()
            .any(|e| e.as_str().starts_with("s3:ObjectCreated:"));
        let rules = c
            .filter()
            .and_then(|f| f.key())
            .map(|k| k.filter_rules())
            .unwrap_or_default();
        let filtered = rules.iter().all(|r| {
            let value = r.value().unwrap_or_default();
            match r.name().map(|n| n.as_str().to_ascii_lowercase()).as_deref() {
                Some("prefix") => key.starts_with(value),
                Some("suffix") => key.ends_with(value),
                _ => false,
            }
        });
        c.lambda_function_arn() == function_arn && created && filtered
    }))
}

/// The metadata item of `image_id` (consistent read).
pub async fn item(
    ddb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    image_id: &str,
) -> Result<HashMap<String, AttributeValue>> {
    ddb.get_item()
        .table_name(table_name)
        .key(table::HASH_KEY, AttributeValue::S(image_id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .with_context(|| format!("dynamodb:GetItem {table_name} {image_id}"))?
        .item
        .with_context(|| format!("no metadata item {image_id} in {table_name}"))
}

/// A string or number attribute as text.
pub fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name)? {
        AttributeValue::S(v) | AttributeValue::N(v) => Some(v.clone()),
        _ => None,
    }
}

/// One rendition as the metadata item records it: a full size or a width variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    pub format: Format,
    /// The full size (recorded under `formats` too), else a width variant.
    pub full_size: bool,
    pub width: u32,
    pub height: u32,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub cdn_path: String,
}

/// Every rendition a completed item records: first the full size of each
/// format (`formats`, in `Format::ALL` order), then every width variant
/// (`variants`, as listed). The `variants` list must contain each full-size
/// rendition with the same bucket, key, size and CDN path, and its entries
/// must be distinct; an item written before variants existed has only
/// `formats` (its full sizes are returned with the item's dimensions).
pub fn renditions(item: &HashMap<String, AttributeValue>) -> Result<Vec<Rendition>> {
    let Some(AttributeValue::M(formats)) = item.get(attr::FORMATS) else {
        bail!("item has no {} map: {item:?}", attr::FORMATS);
    };
    let dimension = |name: &str| -> Result<u32> {
        text(item, name)
            .with_context(|| format!("item has no {name}"))?
            .parse()
            .with_context(|| format!("item {name}"))
    };
    let mut full = Vec::new();
    for f in Format::ALL {
        let Some(AttributeValue::M(r)) = formats.get(f.as_str()) else {
            continue;
        };
        let field = |name: &str| text(r, name).with_context(|| format!("formats.{f}.{name}"));
        full.push(Rendition {
            format: f,
            full_size: true,
            width: dimension(attr::WIDTH)?,
            height: dimension(attr::HEIGHT)?,
            bucket: field(attr::BUCKET)?,
            key: field(attr::KEY)?,
            size: field(attr::SIZE)?.parse()?,
            cdn_path: field(attr::CDN_PATH)?,
        });
    }
    let Some(list) = item.get(attr::VARIANTS) else {
        return Ok(full);
    };
    let AttributeValue::L(list) = list else {
        bail!("{} is not a list: {list:?}", attr::VARIANTS);
    };
    let mut variants = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let AttributeValue::M(v) = entry else {
            bail!("{}[{i}] is not a map: {entry:?}", attr::VARIANTS);
        };
        let field = |name: &str| text(v, name).with_context(|| format!("variants[{i}].{name}"));
        let format: Format = field(attr::FORMAT)?.parse()?;
        let r = Rendition {
            format,
            full_size: false,
            width: field(attr::WIDTH)?.parse()?,
            height: field(attr::HEIGHT)?.parse()?,
            bucket: field(attr::BUCKET)?,
            key: field(attr::KEY)?,
            size: field(attr::SIZE)?.parse()?,
            cdn_path: field(attr::CDN_PATH)?,
        };
        if variants.iter().any(|o: &Rendition| o.key == r.key)
            || variants
                .iter()
                .any(|o: &Rendition| (o.format, o.width) == (r.format, r.width))
        {
            bail!("variants[{i}] repeats a key or a (format, width): {r:?}");
        }
        variants.push(r);
    }
    for f in &mut full {
        let listed = variants
            .iter()
            .position(|v| v.format == f.format && v.key == f.key)
            .with_context(|| format!("the full-size {} rendition is not in variants", f.format))?;
        let v = variants.remove(listed);
        ensure!(
            (
                v.bucket.as_str(),
                v.size,
                v.cdn_path.as_str(),
                v.width,
                v.height
            ) == (
                f.bucket.as_str(),
                f.size,
                f.cdn_path.as_str(),
                f.width,
                f.height
            ),
            "variants lists the full-size {} rendition as {v:?}, formats as {f:?}",
            f.format
        );
    }
    full.extend(variants);
    Ok(full)
}

/// Every rendition exists in its bucket at its key with the recorded size,
/// its format's `Content-Type`, the immutable `Cache-Control`, and decodes
/// (from the stored bytes) to the recorded width and height.
/// Decode a rendition: AVIF with libavif's `avifdec` (Debian's libavif-bin,
/// an independent decoder: dav1d), the others with the `image` crate.
pub fn decode(format: Format, bytes: &[u8]) -> Result<image::DynamicImage> {
    if format != Format::Avif {
        return Ok(image::load_from_memory(bytes)?);
    }
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("imagestack-avifdec-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (src, dst) = (dir.join("in.avif"), dir.join("out.png"));
    std::fs::write(&src, bytes)?;
    let out = std::process::Command::new("avifdec")
        .args(["--depth", "8"])
        .arg(&src)
        .arg(&dst)
        .output()
        .context("running avifdec (apt-get install libavif-bin; scripts/lib.sh installs it)")?;
    ensure!(
        out.status.success(),
        "avifdec refused the AVIF: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded = image::open(&dst);
    std::fs::remove_dir_all(&dir).ok();
    Ok(decoded?)
}

pub async fn assert_stored(s3: &aws_sdk_s3::Client, renditions: &[Rendition]) -> Result<()> {
    for r in renditions {
        let what = format!(
            "{} {}x{} s3://{}/{}",
            r.format, r.width, r.height, r.bucket, r.key
        );
        let got = s3
            .get_object()
            .bucket(&r.bucket)
            .key(&r.key)
            .send()
            .await
            .with_context(|| format!("{what} is not stored"))?;
        ensure!(
            got.content_type() == Some(r.format.content_type()),
            "{what}: Content-Type {:?}",
            got.content_type()
        );
        ensure!(
            got.cache_control() == Some(imagestack_contract::RENDITION_CACHE_CONTROL),
            "{what}: Cache-Control {:?}",
            got.cache_control()
        );
        let body = got.body.collect().await?.into_bytes();
        ensure!(
            body.len() as u64 == r.size,
            "{what}: {} bytes stored, {} recorded",
            body.len(),
            r.size
        );
        let expected = match r.format {
            Format::Webp => image::ImageFormat::WebP,
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Png => image::ImageFormat::Png,
            Format::Avif => image::ImageFormat::Avif,
        };
        ensure!(
            image::guess_format(&body).ok() == Some(expected),
            "{what}: the body is not {}",
            r.format
        );
        let decoded = decode(r.format, &body).with_context(|| format!("{what}: decode"))?;
        ensure!(
            (decoded.width(), decoded.height()) == (r.width, r.height),
            "{what}: decodes to {}x{}",
            decoded.width(),
            decoded.height()
        );
    }
    Ok(())
}

/// Where a viewer request for `path` goes: the first cache behaviour whose
/// path pattern matches (else the default), its origin, and that origin's
/// S3 bucket and object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnRoute {
    pub path_pattern: String,
    pub origin_id: String,
    pub origin_domain: String,
    pub bucket: String,
    pub key: String,
    pub uses_origin_access_control: bool,
}

/// CloudFront path-pattern matching: `*` any run of characters, `?` one;
/// case-sensitive; a pattern without a leading `/` is matched as if it had one.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let pattern = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("/{pattern}")
    };
    go(pattern.as_bytes(), path.as_bytes())
}

/// Resolve `path` through the distribution's configuration.
/// The distribution's origin `origin_id` and the S3 bucket it reads
/// (`<bucket>.s3.<region>.amazonaws.com`).
pub fn s3_origin<'a>(
    cfg: &'a aws_sdk_cloudfront::types::DistributionConfig,
    origin_id: &str,
) -> Result<(&'a aws_sdk_cloudfront::types::Origin, String)> {
    let origin = cfg
        .origins()
        .map(|o| o.items())
        .unwrap_or_default()
        .iter()
        .find(|o| o.id() == origin_id)
        .with_context(|| format!("no origin {origin_id}"))?;
    let domain = origin.domain_name();
    let bucket = domain
        .split_once(".s3.")
        .or_else(|| domain.split_once(".s3-"))
        .map(|(b, _)| b.to_string())
        .with_context(|| format!("origin {origin_id} ({domain}) is not an S3 bucket"))?;
    Ok((origin, bucket))
}

pub async fn resolve_cdn_path(
    cf: &aws_sdk_cloudfront::Client,
    distribution_id: &str,
    path: &str,
) -> Result<CdnRoute> {
    let cfg = cf
        .get_distribution_config()
        .id(distribution_id)
        .send()
        .await
        .with_context(|| format!("cloudfront:GetDistributionConfig {distribution_id}"))?
        .distribution_config
        .context("no distribution config")?;
    let (pattern, origin_id) = cfg
        .cache_behaviors()
        .map(|b| b.items())
        .unwrap_or_default()
        .iter()
        .find(|b| path_matches(b.path_pattern(), path))
        .map(|b| {
            (
                b.path_pattern().to_string(),
                b.target_origin_id().to_string(),
            )
        })
        .or_else(|| {
            cfg.default_cache_behavior()
                .map(|d| ("(default)".to_string(), d.target_origin_id().to_string()))
        })
        .context("distribution has no behaviour for the path")?;
    let (origin, bucket) = s3_origin(&cfg, &origin_id)
        .with_context(|| format!("behaviour {pattern} targets origin {origin_id}"))?;
    let domain = origin.domain_name().to_string();
    let prefix = origin.origin_path().unwrap_or_default().trim_matches('/');
    let rest = path.trim_start_matches('/');
    let key = if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    };
    Ok(CdnRoute {
        path_pattern: pattern,
        origin_id,
        origin_domain: domain,
        bucket,
        key,
        uses_origin_access_control: origin
            .origin_access_control_id()
            .is_some_and(|id| !id.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudfront_path_patterns() {
        assert!(path_matches("/webp/*", "/webp/a-1.webp"));
        assert!(path_matches("webp/*", "/webp/a-1.webp"));
        assert!(!path_matches("/webp/*", "/jpeg/a-1.jpg"));
        assert!(!path_matches("/webp/*", "/WEBP/a.webp"));
        assert!(path_matches("/*.jp?g", "/x/y.jpeg"));
        assert!(!path_matches("/*.jp?g", "/x/y.jpg"));
    }

    fn entry(pairs: &[(&str, &str)]) -> AttributeValue {
        AttributeValue::M(
            pairs
                .iter()
                .map(|(k, v)| {
                    let v = if v.parse::<u64>().is_ok() {
                        AttributeValue::N(v.to_string())
                    } else {
                        AttributeValue::S(v.to_string())
                    };
                    (k.to_string(), v)
                })
                .collect(),
        )
    }

    fn item(variants: Option<Vec<AttributeValue>>) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::new();
        item.insert(attr::WIDTH.into(), AttributeValue::N("600".into()));
        item.insert(attr::HEIGHT.into(), AttributeValue::N("400".into()));
        item.insert(
            attr::FORMATS.into(),
            AttributeValue::M(
                [(
                    "png".to_string(),
                    entry(&[
                        ("bucket", "p"),
                        ("key", "png/a-1.png"),
                        ("size", "900"),
                        ("cdn_path", "/png/a-1.png"),
                    ]),
                )]
                .into(),
            ),
        );
        if let Some(v) = variants {
            item.insert(attr::VARIANTS.into(), AttributeValue::L(v));
        }
        item
    }

    fn variant(w: &str, h: &str, key: &str, size: &str) -> AttributeValue {
        entry(&[
            ("format", "png"),
            ("width", w),
            ("height", h),
            ("bucket", "p"),
            ("key", key),
            ("size", size),
            ("cdn_path", &format!("/{key}")),
        ])
    }

    #[test]
    fn renditions_read_formats_and_variants() {
        // An item from before variants: the full sizes only.
        let old = renditions(&item(None)).unwrap();
        assert_eq!(old.len(), 1);
        assert!(old[0].full_size && (old[0].width, old[0].height) == (600, 400));
        let list = vec![
            variant("320", "213", "png/a-1-w320.png", "100"),
            variant("600", "400", "png/a-1.png", "900"),
        ];
        let all = renditions(&item(Some(list.clone()))).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].full_size && all[0].key == "png/a-1.png");
        assert!(!all[1].full_size && (all[1].width, all[1].height) == (320, 213));
        // The list must agree with `formats` and have no duplicates.
        let mut wrong = list.clone();
        wrong[1] = variant("600", "400", "png/a-1.png", "901");
        assert!(renditions(&item(Some(wrong))).is_err());
        assert!(renditions(&item(Some(vec![list[0].clone()]))).is_err());
        let mut twice = list.clone();
        twice.push(variant("320", "213", "png/a-1-w320b.png", "100"));
        assert!(renditions(&item(Some(twice))).is_err());
    }

    #[test]
    fn event_keys_are_form_encoded() {
        assert_eq!(s3_event_key("a b+c/é.jpg"), "a+b%2Bc/%C3%A9.jpg");
    }
}
