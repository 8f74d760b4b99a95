//! Where history lives: a local directory or an object-store URL
//! (`s3://bucket/prefix`, credentials and endpoint from the usual AWS_*
//! environment variables), behind one `ObjectStore` so writing, listing,
//! pruning and reading are the same code for both.

use std::sync::Arc;

use anyhow::Context;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

pub struct HistoryStore {
    pub store: Arc<dyn ObjectStore>,
    /// The store's root URL, as DataFusion registers object stores.
    pub root_url: Url,
    /// Prefix of the history inside the store.
    pub prefix: Path,
    /// How the user wrote it, for messages.
    pub display: String,
    /// A local directory opened for writing: writes and retention go
    /// through it, never following links (see [`super::local`]).
    pub local: Option<super::local::LocalTree>,
    /// A local history's directory (links below it resolved away, the
    /// operator's own link to it followed once): `--history` lists and
    /// opens files from here without following links ([`super::walk`]).
    pub root_dir: Option<std::path::PathBuf>,
}

impl HistoryStore {
    /// Open `location`: `s3://bucket/prefix` or a local directory (created
    /// when `create` is set).
    pub fn open(location: &str, create: bool) -> anyhow::Result<Self> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                anyhow::bail!("{location}: no bucket in the URL (s3://bucket/prefix)");
            }
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .with_context(|| format!("cannot open {location} (set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, and AWS_ENDPOINT for a non-AWS server)"))?;
            return Ok(HistoryStore {
                store: Arc::new(store),
                root_url: Url::parse(&format!("s3://{bucket}"))?,
                prefix: Path::from(prefix.trim_matches('/')),
                display: location.to_string(),
                local: None,
                root_dir: None,
            });
        }
        if location.contains("://") {
            anyhow::bail!("{location}: only local directories and s3:// URLs are supported");
        }
        let dir = std::path::Path::new(location);
        let local = if create { Some(super::local::LocalTree::open(dir)?) } else { None };
        let abs = match &local {
            Some(tree) => tree.root().to_path_buf(),
            None => dir.canonicalize().with_context(|| format!("no history directory {location}"))?,
        };
        Ok(HistoryStore {
            store: Arc::new(LocalFileSystem::new()),
            root_url: Url::parse("file:///")?,
            prefix: Path::from_filesystem_path(&abs)?,
            display: location.to_string(),
            local,
            root_dir: Some(abs),
        })
    }

    /// `prefix/<parts...>`.
    pub fn path(&self, parts: &[&str]) -> Path {
        parts.iter().fold(self.prefix.clone(), |p, part| p.join(*part))
    }

    /// The URL DataFusion lists a table from: `<root>/<prefix>/<table>/`.
    pub fn table_url(&self, table: &str) -> String {
        let path = self.path(&[table]);
        match self.root_url.scheme() {
            "file" => format!("/{path}/"),
            _ => format!("{}/{path}/", self.root_url.as_str().trim_end_matches('/')),
        }
    }
}
