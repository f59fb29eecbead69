//! The stack's CloudFront Function as a viewer meets it: the code deployed
//! in CloudFront (read back from the emulator, never from the source tree)
//! runs under `tests/edge/harness.mjs` (Node, the cloudfront-js-2.0 event
//! shape and refusals), and its answer is resolved through the
//! distribution's origins to an S3 bucket and key.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use aws_sdk_cloudfront::types::{DistributionConfig, FunctionStage};
use imagestack_contract::Format;
use serde_json::{Value, json};

use crate::pipeline::{path_matches, s3_origin};

/// One browser profile of `tests/edge/profiles.mjs`.
#[derive(Debug, Clone)]
pub struct Browser {
    pub name: String,
    pub accept: String,
}

/// What the function answered for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The rewritten URI (a request passed on), else `None`.
    pub uri: Option<String>,
    /// The origin id the function selected.
    pub origin: Option<String>,
    /// The status of a response the function generated itself (a 400).
    pub status: Option<u16>,
}

/// Where an answer leads: the bucket behind the selected origin and the key
/// S3 decodes the rewritten URI to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub origin_id: String,
    pub bucket: String,
    pub key: String,
}

fn harness() -> PathBuf {
    crate::repo_root().join("tests/edge/harness.mjs")
}

/// The browser profiles the Node tests and the README table use (one source).
pub fn browsers() -> Result<Vec<Browser>> {
    let url = format!(
        "file://{}",
        crate::repo_root().join("tests/edge/profiles.mjs").display()
    );
    let out = Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            &format!("const m = await import({url:?}); console.log(JSON.stringify(m.BROWSERS));"),
        ])
        .output()
        .context("node (install nodejs)")?;
    ensure!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v.as_array()
        .context("BROWSERS is not a list")?
        .iter()
        .map(|b| {
            Ok(Browser {
                name: b["name"].as_str().context("name")?.to_string(),
                accept: b["accept"].as_str().context("accept")?.to_string(),
            })
        })
        .collect()
}

/// The `LIVE` code of the function `arn` names, written to a file in `dir`.
pub async fn deployed_code(
    cf: &aws_sdk_cloudfront::Client,
    arn: &str,
    dir: &Path,
) -> Result<PathBuf> {
    let name = arn
        .rsplit_once(":function/")
        .map(|(_, n)| n)
        .with_context(|| format!("{arn} is not a CloudFront function ARN"))?;
    let out = cf
        .get_function()
        .name(name)
        .stage(FunctionStage::Live)
        .send()
        .await
        .with_context(|| format!("cloudfront:GetFunction {name} (LIVE)"))?;
    let code = out.function_code().context("no code")?.as_ref().to_vec();
    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!("{name}.js"));
    std::fs::write(&file, code)?;
    Ok(file)
}

/// Run the function in `code` on `GET <uri>?<query>` with `Accept: accept`.
pub fn request(code: &Path, uri: &str, query: &str, accept: &str) -> Result<Answer> {
    let req = json!({"uri": uri, "query": query, "headers": {"accept": accept}, "method": "GET"});
    let out = Command::new("node")
        .arg(harness())
        .arg(code)
        .arg(req.to_string())
        .output()
        .context("node (install nodejs)")?;
    ensure!(
        out.status.success(),
        "harness refused or the function threw on {req}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stdout).to_string())?;
    Ok(Answer {
        uri: v["uri"].as_str().map(str::to_string),
        origin: v["origin"].as_str().map(str::to_string),
        status: v["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
    })
}

/// The function the distribution runs on viewer requests for `path`: the
/// behaviour CloudFront matches `path` to must associate exactly one function.
pub fn viewer_request_function(cfg: &DistributionConfig, path: &str) -> Result<String> {
    let behaviour = cfg
        .cache_behaviors()
        .map(|b| b.items())
        .unwrap_or_default()
        .iter()
        .find(|b| path_matches(b.path_pattern(), path))
        .with_context(|| format!("no cache behaviour matches {path}"))?;
    let arns: Vec<&str> = behaviour
        .function_associations()
        .map(|f| f.items())
        .unwrap_or_default()
        .iter()
        .filter(|a| a.event_type().as_str() == "viewer-request")
        .map(|a| a.function_arn())
        .collect();
    match arns.as_slice() {
        [one] => Ok(one.to_string()),
        other => bail!(
            "behaviour {} runs {} viewer-request functions",
            behaviour.path_pattern(),
            other.len()
        ),
    }
}

/// Resolve an answer through the distribution's origins.
pub fn resolve(cfg: &DistributionConfig, answer: &Answer) -> Result<Target> {
    let (Some(uri), Some(origin_id)) = (&answer.uri, &answer.origin) else {
        bail!("the function did not pass the request on: {answer:?}");
    };
    let (origin, bucket) = s3_origin(cfg, origin_id).context("the origin the function selected")?;
    ensure!(
        origin
            .origin_access_control_id()
            .is_some_and(|id| !id.is_empty()),
        "origin {origin_id} is not signed by the origin access control"
    );
    let path = uri.strip_prefix('/').context("URI without a leading /")?;
    let key = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .context("rewritten URI is not UTF-8 once decoded")?
        .to_string();
    Ok(Target {
        origin_id: origin_id.clone(),
        bucket,
        key,
    })
}

/// The format a browser with this `Accept` should get from a stack with
/// `enabled` formats: AVIF, else WebP when listed, else JPEG (the contract).
pub fn expected_format(accept: &str, enabled: &[Format]) -> Format {
    let listed = |mime: &str| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            parts.next() == Some(mime)
                && !parts.any(|p| p.replace(' ', "").eq_ignore_ascii_case("q=0"))
        })
    };
    for (f, mime) in [(Format::Avif, "image/avif"), (Format::Webp, "image/webp")] {
        if enabled.contains(&f) && listed(mime) {
            return f;
        }
    }
    if enabled.contains(&Format::Jpeg) {
        Format::Jpeg
    } else {
        enabled.first().copied().unwrap_or(Format::Jpeg)
    }
}

/// The width a request for `target` physical pixels gets from an image
/// `source_width` wide: the smallest configured width ≥ target, or the full
/// size when there is none or it is not narrower than the source.
pub fn expected_width(target: u32, source_width: u32, widths: &[u32]) -> u32 {
    let mut sorted = widths.to_vec();
    sorted.sort_unstable();
    match sorted.into_iter().find(|w| *w >= target) {
        Some(w) if w < source_width => w,
        _ => source_width,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        let all = Format::ALL;
        assert_eq!(
            expected_format("image/avif,image/webp,*/*", &all),
            Format::Avif
        );
        assert_eq!(
            expected_format("image/avif;q=0,image/webp", &all),
            Format::Webp
        );
        assert_eq!(expected_format("image/webp,*/*;q=0.8", &all), Format::Webp);
        assert_eq!(expected_format("*/*", &all), Format::Jpeg);
        assert_eq!(
            expected_format("image/avif", &Format::DEFAULT),
            Format::Jpeg
        );
        assert_eq!(expected_width(300, 600, &[320, 640]), 320);
        assert_eq!(expected_width(321, 600, &[320, 640]), 600);
        assert_eq!(expected_width(2000, 600, &[320, 640]), 600);
        assert_eq!(expected_width(100, 300, &[320, 640]), 300);
    }
}
