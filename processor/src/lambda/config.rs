//! Configuration from the environment variables the operator sets
//! (names in [`imagestack_contract::env`]). A missing or invalid variable is
//! a start-up error naming it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use imagestack_contract::{Format, defaults, edge, env, widths};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pipeline::{self, Settings};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub environment: String,
    /// The `Stack` metric dimension (`None`: not set, `Environment` only).
    pub stack: Option<String>,
    pub upload_bucket: String,
    /// Output bucket per configured format.
    pub buckets: BTreeMap<Format, String>,
    pub table: String,
    /// Scheme and host before the edge `url` and `srcset` of each item
    /// (`""`: relative URLs).
    pub image_url_prefix: String,
    pub settings: Settings,
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let vars = Vars(&lookup);
        let formats = vars.formats()?;
        let mut buckets = BTreeMap::new();
        for f in Format::ALL {
            // The classic three are always set by the operator; AVIF's bucket
            // is needed only when AVIF is produced (older operators omit it).
            if f == Format::Avif && !formats.contains(&f) {
                continue;
            }
            let bucket = vars.required(env::bucket_var(f))?;
            if formats.contains(&f) {
                buckets.insert(f, bucket);
            }
        }
        let limits = Limits {
            max_bytes: vars.number(env::MAX_INPUT_BYTES, 1, u64::MAX)?,
            max_pixels: vars.number(env::MAX_INPUT_PIXELS, 1, u64::MAX)?,
            max_dimension: vars.optional_number(
                env::MAX_INPUT_DIMENSION,
                1,
                defaults::MAX_INPUT_DIMENSION,
                defaults::MAX_INPUT_DIMENSION,
            )?,
        };
        let settings = Settings {
            formats,
            webp_quality: vars.number(env::WEBP_QUALITY, 1, 100)?,
            jpeg_quality: vars.number(env::JPEG_QUALITY, 1, 100)?,
            avif_quality: vars.optional_number(
                env::AVIF_QUALITY,
                1,
                100,
                defaults::AVIF_QUALITY,
            )?,
            avif_speed: crate::encode::avif::SPEED,
            webp_method: vars.number(env::WEBP_METHOD, 0, 6)?,
            limits,
            jpeg_background: vars.background()?,
            time_budget: Duration::from_millis(vars.optional_number(
                env::TIME_BUDGET_MS,
                1,
                3_600_000,
                defaults::TIME_BUDGET_MS,
            )?),
            parallelism: pipeline::available_parallelism(),
            widths: vars.widths()?,
        };
        Ok(Config {
            environment: vars.required(env::ENVIRONMENT)?,
            stack: vars.get(env::STACK),
            upload_bucket: vars.required(env::UPLOAD_BUCKET)?,
            buckets,
            table: vars.required(env::METADATA_TABLE)?,
            image_url_prefix: vars.url_prefix()?,
            settings,
        })
    }
}

struct Vars<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String> {
        self.get(var).ok_or_else(|| Error::Config {
            var,
            message: "is not set (the operator sets it on the function)".to_string(),
        })
    }

    fn parse<T>(&self, var: &'static str, raw: &str, min: T, max: T) -> Result<T>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match raw.parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => Err(Error::Config {
                var,
                message: format!("expected an integer from {min} to {max}, got {raw:?}"),
            }),
        }
    }

    fn number<T>(&self, var: &'static str, min: T, max: T) -> Result<T>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let raw = self.required(var)?;
        self.parse(var, &raw, min, max)
    }

    fn optional_number<T>(&self, var: &'static str, min: T, max: T, default: T) -> Result<T>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match self.get(var) {
            Some(raw) => self.parse(var, &raw, min, max),
            None => Ok(default),
        }
    }

    fn formats(&self) -> Result<Vec<Format>> {
        Format::parse_list(&self.required(env::FORMATS)?).map_err(|message| Error::Config {
            var: env::FORMATS,
            message,
        })
    }

    /// `IMAGESTACK_WIDTHS`, else the default widths (deployments made before
    /// the variable existed keep working and get the default variants).
    fn widths(&self) -> Result<Vec<u32>> {
        match self.get(env::WIDTHS) {
            None => Ok(widths::DEFAULT.to_vec()),
            Some(raw) => widths::parse(&raw).map_err(|e| Error::Config {
                var: env::WIDTHS,
                message: format!("{e} (got {raw:?})"),
            }),
        }
    }

    /// `IMAGESTACK_IMAGE_URL_PREFIX`, checked, else `""` (relative URLs).
    fn url_prefix(&self) -> Result<String> {
        match self.get(env::IMAGE_URL_PREFIX) {
            None => Ok(String::new()),
            Some(raw) => edge::parse_url_prefix(&raw).map_err(|message| Error::Config {
                var: env::IMAGE_URL_PREFIX,
                message,
            }),
        }
    }

    fn background(&self) -> Result<[u8; 3]> {
        let raw = self
            .get(env::JPEG_BACKGROUND)
            .unwrap_or_else(|| defaults::JPEG_BACKGROUND.to_string());
        parse_hex_colour(&raw).ok_or_else(|| Error::Config {
            var: env::JPEG_BACKGROUND,
            message: format!("expected a colour as RRGGBB hex, got {raw:?}"),
        })
    }
}

/// `RRGGBB` (optionally with a leading `#`) to bytes.
pub fn parse_hex_colour(raw: &str) -> Option<[u8; 3]> {
    let hex = raw.trim().trim_start_matches('#');
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn full() -> HashMap<&'static str, String> {
        let mut m = HashMap::new();
        m.insert(env::ENVIRONMENT, "prod".to_string());
        m.insert(env::UPLOAD_BUCKET, "up".to_string());
        m.insert(env::WEBP_BUCKET, "w".to_string());
        m.insert(env::JPEG_BUCKET, "j".to_string());
        m.insert(env::PNG_BUCKET, "p".to_string());
        m.insert(env::AVIF_BUCKET, "a".to_string());
        m.insert(env::AVIF_QUALITY, "55".to_string());
        m.insert(env::METADATA_TABLE, "t".to_string());
        m.insert(env::FORMATS, "webp,jpeg,png".to_string());
        m.insert(env::WEBP_QUALITY, "80".to_string());
        m.insert(env::JPEG_QUALITY, "82".to_string());
        m.insert(env::WEBP_METHOD, "6".to_string());
        m.insert(env::MAX_INPUT_BYTES, "1000".to_string());
        m.insert(env::MAX_INPUT_PIXELS, "2000".to_string());
        m
    }

    fn load(m: &HashMap<&'static str, String>) -> Result<Config> {
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn the_avif_bucket_is_required_only_when_avif_is_produced() {
        let mut m = full();
        m.remove(env::AVIF_BUCKET);
        m.remove(env::AVIF_QUALITY);
        let c = load(&m).unwrap();
        assert!(!c.buckets.contains_key(&Format::Avif));
        assert_eq!(c.settings.avif_quality, defaults::AVIF_QUALITY);
        m.insert(env::FORMATS, "webp,avif".to_string());
        let err = load(&m).unwrap_err().to_string();
        assert!(err.contains(env::AVIF_BUCKET), "{err}");
        m.insert(env::AVIF_BUCKET, "a".to_string());
        let c = load(&m).unwrap();
        assert_eq!(c.buckets.get(&Format::Avif).map(String::as_str), Some("a"));
        assert_eq!(c.settings.formats, vec![Format::Webp, Format::Avif]);
    }

    #[test]
    fn the_stack_identity_is_optional() {
        assert_eq!(load(&full()).unwrap().stack, None);
        let mut m = full();
        m.insert(env::STACK, "team-a/images".to_string());
        assert_eq!(load(&m).unwrap().stack.as_deref(), Some("team-a/images"));
    }

    #[test]
    fn every_contract_variable_is_read() {
        let c = load(&full()).unwrap();
        assert_eq!(c.environment, "prod");
        assert_eq!(c.buckets.get(&Format::Jpeg).map(String::as_str), Some("j"));
        assert_eq!(c.settings.webp_quality, 80);
        assert_eq!(c.settings.jpeg_quality, 82);
        assert_eq!(c.settings.avif_quality, 55);
        assert_eq!(c.settings.webp_method, 6);
        assert_eq!(c.settings.limits.max_bytes, 1000);
        assert_eq!(c.settings.limits.max_pixels, 2000);
        assert_eq!(c.settings.jpeg_background, [255, 255, 255]);
        assert_eq!(
            c.settings.time_budget,
            Duration::from_millis(defaults::TIME_BUDGET_MS)
        );
        // Absent: the default widths (old deployments keep working).
        assert_eq!(c.settings.widths, vec![320, 640, 1280, 1920]);
        // Absent: relative edge URLs.
        assert_eq!(c.image_url_prefix, "");
        // Each required variable, removed alone, is named in the error.
        for var in env::ALL {
            let mut m = full();
            m.remove(var);
            match load(&m) {
                Err(Error::Config { var: named, .. }) => assert_eq!(named, var),
                other => panic!("{var}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, bad) in [
            (env::WEBP_QUALITY, "0"),
            (env::JPEG_QUALITY, "101"),
            (env::WEBP_METHOD, "7"),
            (env::MAX_INPUT_BYTES, "lots"),
            (env::FORMATS, "webp,gif"),
            (env::FORMATS, " , "),
            (env::JPEG_BACKGROUND, "white"),
            (env::TIME_BUDGET_MS, "-1"),
            (env::WIDTHS, "320,abc"),
            (env::WIDTHS, "320;640"),
            (env::WIDTHS, "8"),
            (env::WIDTHS, "9000"),
            (env::WIDTHS, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"),
            (env::WIDTHS, ","),
            (env::IMAGE_URL_PREFIX, "images.example.com"),
            (env::IMAGE_URL_PREFIX, "https://images.example.com/path"),
            (env::IMAGE_URL_PREFIX, "https://images.example.com?x"),
        ] {
            let mut m = full();
            m.insert(var, bad.to_string());
            match load(&m) {
                Err(e @ Error::Config { .. }) => {
                    assert!(
                        e.to_string().starts_with(&format!("configuration: {var}:")),
                        "{e}"
                    )
                }
                other => panic!("{var}={bad}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn optional_variables_override_defaults() {
        let mut m = full();
        m.insert(env::FORMATS, "png, webp".to_string());
        m.insert(env::JPEG_BACKGROUND, "#102030".to_string());
        m.insert(env::TIME_BUDGET_MS, "1500".to_string());
        m.insert(env::MAX_INPUT_DIMENSION, "4000".to_string());
        m.insert(env::WIDTHS, " 1024, 16,8192,1024".to_string());
        m.insert(
            env::IMAGE_URL_PREFIX,
            "https://d111.cloudfront.net/".to_string(),
        );
        let c = load(&m).unwrap();
        assert_eq!(c.image_url_prefix, "https://d111.cloudfront.net");
        assert_eq!(c.settings.widths, vec![16, 1024, 8192]);
        assert_eq!(c.settings.formats, vec![Format::Png, Format::Webp]);
        assert!(!c.buckets.contains_key(&Format::Jpeg));
        assert_eq!(c.settings.jpeg_background, [0x10, 0x20, 0x30]);
        assert_eq!(c.settings.time_budget, Duration::from_millis(1500));
        assert_eq!(c.settings.limits.max_dimension, 4000);
    }
}
