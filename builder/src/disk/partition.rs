//! The GPT partition table (with its protective MBR), written with the
//! `gpt` crate; every GUID comes from the [`Layout`].

use std::collections::BTreeMap;
use std::fs::File;
use std::str::FromStr;

use anyhow::{Context, Result};

use super::SECTOR;
use crate::model::Layout;

/// Write the protective MBR and both GPT headers for `lay` into `file`.
pub fn write_gpt(mut file: File, lay: &Layout) -> Result<()> {
    let sectors = lay.size / SECTOR;
    let lb = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(lb)
        .overwrite_lba0(&mut file)
        .context("writing the protective MBR")?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(file, Some(uuid::Uuid::from_str(&lay.disk_guid)?))
        .context("creating the GPT")?;
    let mut map = BTreeMap::new();
    for p in &lay.partitions {
        let ty = gpt::partition_types::Type::from_str(&p.type_guid)
            .map_err(|e| anyhow::anyhow!("partition type {}: {e}", p.type_guid))?;
        map.insert(
            p.number,
            gpt::partition::Partition {
                part_type_guid: ty,
                part_guid: uuid::Uuid::from_str(&p.guid)?,
                first_lba: p.offset / SECTOR,
                last_lba: (p.offset + p.size) / SECTOR - 1,
                flags: 0,
                name: p.name.to_string(),
            },
        );
    }
    disk.update_partitions(map)
        .context("filling the partition table")?;
    let file = disk.write().context("writing the GPT")?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{layout, DiskSpec, MIB};

    #[test]
    fn table_reads_back_with_our_guids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let spec = DiskSpec {
            size: 2048 * MIB,
            esp_size: 64 * MIB,
            boot_size: 256 * MIB,
        };
        let lay = layout(&spec, "t");
        f.set_len(lay.size).unwrap();
        write_gpt(f, &lay).unwrap();
        let d = gpt::GptConfig::new().open(&p).unwrap();
        assert_eq!(d.guid().to_string(), lay.disk_guid);
        let parts = d.partitions();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[&4].part_guid.to_string(), lay.partitions[3].guid);
        assert_eq!(parts[&2].first_lba * 512, lay.partitions[1].offset);
        assert_eq!(parts[&1].part_type_guid, gpt::partition_types::BIOS);
    }
}
