//! A read-only view of the history store that leaves out files found
//! unreadable (a corrupt footer) or in conflict with the table's schema,
//! so one bad file costs one warning, not every query of the session.
//! DataFusion's listing table lists through this view; it cannot write.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug)]
pub struct SkipFiles {
    inner: Arc<dyn ObjectStore>,
    skip: HashSet<Path>,
}

impl SkipFiles {
    pub fn new(inner: Arc<dyn ObjectStore>, skip: HashSet<Path>) -> Self {
        SkipFiles { inner, skip }
    }
}

impl fmt::Display for SkipFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history view of {} ({} files left out)", self.inner, self.skip.len())
    }
}

fn read_only<T>() -> Result<T> {
    Err(object_store::Error::NotSupported { source: "the history view is read-only".into() })
}

#[async_trait]
impl ObjectStore for SkipFiles {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
        read_only()
    }

    async fn put_multipart_opts(&self, _: &Path, _: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        read_only()
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        locations.map(|_| read_only()).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let skip = self.skip.clone();
        self.inner.list(prefix).filter(move |m| std::future::ready(!matches!(m, Ok(m) if skip.contains(&m.location)))).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut listing = self.inner.list_with_delimiter(prefix).await?;
        listing.objects.retain(|m| !self.skip.contains(&m.location));
        Ok(listing)
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> Result<()> {
        read_only()
    }
}
