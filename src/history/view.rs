//! The history store as `history.*` tables read it: read-only, and under
//! the history's prefix only the files registration admitted, each read
//! as the version that was checked.
//!
//! Local files are opened again without following links
//! ([`super::walk::LocalFile::open`]) and refused if they changed since
//! they were checked; an object-store file is refused if its size or ETag
//! changed. So a file swapped, rewritten or replaced by a link after
//! registration is never decoded unchecked. Paths outside the history's
//! prefix (an `--allow-files` query of another file) go to the store
//! underneath unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use super::walk::LocalFile;

/// One file admitted to the view.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub meta: ObjectMeta,
    /// How to open it again, for a local history.
    pub local: Option<LocalFile>,
}

#[derive(Debug)]
pub struct HistoryView {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    files: BTreeMap<Path, Admitted>,
}

impl HistoryView {
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: Path, files: impl IntoIterator<Item = Admitted>) -> Self {
        let files = files.into_iter().map(|a| (a.meta.location.clone(), a)).collect();
        HistoryView { inner, prefix, files }
    }

    fn ours(&self, p: &Path) -> bool {
        p.prefix_matches(&self.prefix)
    }

    /// The admitted files below `prefix` (a filter, not a cut-off: paths
    /// such as `a/b-c` sort between `a/b` and `a/b/...`).
    fn under<'a>(&'a self, prefix: &'a Path) -> impl Iterator<Item = &'a Admitted> + 'a {
        self.files.range(prefix.clone()..).filter(move |(p, _)| p.prefix_matches(prefix)).map(|(_, a)| a)
    }
}

impl fmt::Display for HistoryView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history view of {} ({} files)", self.inner, self.files.len())
    }
}

fn read_only<T>() -> Result<T> {
    Err(object_store::Error::NotSupported { source: "the history view is read-only".into() })
}

fn generic(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic { store: "history", source: e.into() }
}

#[async_trait]
impl ObjectStore for HistoryView {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
        read_only()
    }

    async fn put_multipart_opts(&self, _: &Path, _: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        read_only()
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if !self.ours(location) {
            return self.inner.get_opts(location, options).await;
        }
        let Some(admitted) = self.files.get(location) else {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "not a file --history admitted".into(),
            });
        };
        let Some(local) = &admitted.local else {
            let got = self.inner.get_opts(location, options).await?;
            if got.meta.size != admitted.meta.size || got.meta.e_tag != admitted.meta.e_tag {
                return Err(generic(format!("{location} changed after --history was read; not read")));
            }
            return Ok(got);
        };
        let file = local.open().map_err(generic)?;
        let size = admitted.meta.size;
        let range = match &options.range {
            None => 0..size,
            Some(r) => r.as_range(size).map_err(|e| generic(e.to_string()))?,
        };
        Ok(GetResult {
            payload: GetResultPayload::File(file, local.display().into()),
            meta: admitted.meta.clone(),
            range,
            attributes: Default::default(),
        })
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        locations.map(|_| read_only()).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let prefix = prefix.cloned().unwrap_or_default();
        if !self.ours(&prefix) {
            return self.inner.list(Some(&prefix));
        }
        let metas: Vec<Result<ObjectMeta>> = self.under(&prefix).map(|a| Ok(a.meta.clone())).collect();
        futures::stream::iter(metas).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let prefix = prefix.cloned().unwrap_or_default();
        if !self.ours(&prefix) {
            return self.inner.list_with_delimiter(Some(&prefix)).await;
        }
        let depth = prefix.parts_count();
        let (mut objects, mut dirs) = (Vec::new(), BTreeSet::new());
        for a in self.under(&prefix) {
            let p = &a.meta.location;
            if p.parts_count() == depth + 1 {
                objects.push(a.meta.clone());
            } else if let Some(next) = p.parts().nth(depth) {
                dirs.insert(prefix.clone().join(next));
            }
        }
        Ok(ListResult { common_prefixes: dirs.into_iter().collect(), objects })
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> Result<()> {
        read_only()
    }
}
