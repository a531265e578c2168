//! The partition layout of an image, as the disk writer lays it out and the
//! build metadata records it.

use serde::{Deserialize, Serialize};

/// One partition of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// 1-based GPT index.
    pub number: u32,
    /// GPT partition name (and filesystem label).
    pub name: String,
    /// Byte offset of the first sector.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// GPT type GUID.
    pub type_guid: String,
    /// GPT unique partition GUID.
    pub guid: String,
    /// Filesystem written into it ("" for raw boot code).
    pub filesystem: String,
    /// Filesystem UUID or FAT volume id, when there is a filesystem.
    pub fs_id: String,
}

/// The partition layout of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Whole-disk size in bytes.
    pub size: u64,
    /// GPT disk GUID.
    pub disk_guid: String,
    /// Partitions in order.
    pub partitions: Vec<Part>,
}

impl Layout {
    /// The partition called `name`.
    pub fn part(&self, name: &str) -> &Part {
        self.partitions
            .iter()
            .find(|p| p.name == name)
            .expect("layout has every partition")
    }
}
