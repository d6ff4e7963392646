//! Storage: the single-instance blob store and the metadata store, behind narrow traits
//! so that other engines (S3, PostgreSQL) drop in without touching the layers above.

pub mod blob;
pub mod lease;
pub mod meta;
#[doc(hidden)]
pub mod testkit;

pub use blob::{BlobError, BlobStore, BlobWriter, ByteStream};
pub use meta::{MetaError, MetaStore, UploadSession};
