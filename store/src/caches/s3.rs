//! A binary cache in an S3-compatible bucket (`s3://BUCKET/PREFIX?endpoint=URL&region=REGION`, as
//! Nix writes them): requests are presigned (SigV4, `rusty-s3`) and sent by the fetcher's HTTP
//! client.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::BinaryCache;
use crate::error::{Error, Result};
use crate::fetch::Fetcher;

/// An S3-compatible bucket: requests are presigned (SigV4, `rusty-s3`) and sent by the fetcher's
/// HTTP client.
pub(super) struct S3 {
    bucket: rusty_s3::Bucket,
    prefix: String,
    credentials: Option<rusty_s3::Credentials>,
}

/// How long a presigned request stays valid.
const PRESIGN: std::time::Duration = std::time::Duration::from_secs(3600);

impl S3 {
    pub(super) fn parse(url: &str) -> Result<S3> {
        let bad = |why: String| Error::Untrusted {
            name: url.to_owned(),
            why: format!("not an S3 cache URL: {why}"),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let name = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("it names no bucket".into()))?
            .to_owned();
        let prefix = parsed.path().trim_matches('/').to_owned();
        let query: std::collections::BTreeMap<String, String> = parsed.query_pairs().into_owned().collect();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let region = query
            .get("region")
            .cloned()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = query
            .get("endpoint")
            .cloned()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"));
        let (endpoint, style) = match endpoint {
            Some(e) => (e, rusty_s3::UrlStyle::Path),
            None => (format!("https://s3.{region}.amazonaws.com"), rusty_s3::UrlStyle::VirtualHost),
        };
        let endpoint = url::Url::parse(&endpoint).map_err(|e| bad(format!("endpoint `{endpoint}`: {e}")))?;
        let bucket = rusty_s3::Bucket::new(endpoint, style, name, region).map_err(|e| bad(e.to_string()))?;
        Ok(S3 { bucket, prefix, credentials: aws_credentials() })
    }

    fn key(&self, file: &str) -> String {
        if self.prefix.is_empty() { file.to_owned() } else { format!("{}/{file}", self.prefix) }
    }

    fn sign(&self, method: rusty_s3::Method, file: &str) -> String {
        use rusty_s3::S3Action;
        let key = self.key(file);
        let creds = self.credentials.as_ref();
        let url = match method {
            rusty_s3::Method::Put => self.bucket.put_object(creds, &key).sign(PRESIGN),
            rusty_s3::Method::Head => self.bucket.head_object(creds, &key).sign(PRESIGN),
            _ => self.bucket.get_object(creds, &key).sign(PRESIGN),
        };
        url.to_string()
    }
}

/// Credentials from where AWS's own tools look: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
/// (and `AWS_SESSION_TOKEN`), else the `AWS_PROFILE` (or `default`) section of
/// `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`. None: anonymous requests.
fn aws_credentials() -> Option<rusty_s3::Credentials> {
    if let Some(c) = rusty_s3::Credentials::from_env() {
        return Some(c);
    }
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    credentials_in(text, &profile)
}

/// The credentials of `profile`'s section of a credentials file (INI, as AWS's tools read it).
fn credentials_in(text: String, profile: &str) -> Option<rusty_s3::Credentials> {
    let mut defaults = configparser::ini::Ini::new_cs().defaults();
    defaults.delimiters = vec!['='];
    defaults.enable_inline_comments = false;
    let sections = configparser::ini::Ini::new_from_defaults(defaults).read(text).ok()?;
    let values: std::collections::BTreeMap<&str, &str> =
        sections.get(profile)?.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_deref()?))).collect();
    let key = *values.get("aws_access_key_id")?;
    let secret = *values.get("aws_secret_access_key")?;
    Some(match values.get("aws_session_token").copied() {
        Some(token) => rusty_s3::Credentials::new_with_token(key, secret, token),
        None => rusty_s3::Credentials::new(key, secret),
    })
}

impl BinaryCache for S3 {
    fn is_local(&self) -> bool {
        false
    }

    fn location(&self, file: &str) -> String {
        self.sign(rusty_s3::Method::Get, file)
    }

    fn has(&self, fetcher: &Fetcher, file: &str) -> Result<bool> {
        fetcher.exists(&self.sign(rusty_s3::Method::Head, file))
    }

    fn read(&self, fetcher: &Fetcher, file: &str) -> Result<Option<Vec<u8>>> {
        super::read_url(fetcher, &self.location(file))
    }

    fn put(
        &self,
        fetcher: &Fetcher,
        file: &str,
        staging: &Path,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        super::put_url(fetcher, &self.sign(rusty_s3::Method::Put, file), staging, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credentials_file_gives_the_profiles_keys() {
        let text = "# keys\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key=s3cr=t\n\n[ci]\naws_access_key_id = AKIA2\naws_secret_access_key = x\naws_session_token = tok\n";
        let d = credentials_in(text.to_owned(), "default").unwrap();
        // Only the first `=` separates: a secret may hold one.
        assert_eq!((d.key(), d.secret(), d.token()), ("AKIA1", "s3cr=t", None));
        let ci = credentials_in(text.to_owned(), "ci").unwrap();
        assert_eq!((ci.key(), ci.token()), ("AKIA2", Some("tok")));
        assert!(credentials_in(text.to_owned(), "CI").is_none(), "profile names keep their case");
        assert!(credentials_in("[default]\naws_access_key_id = A\n".to_owned(), "default").is_none());
    }
}
