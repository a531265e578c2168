//! OVA appliance writer: a ustar archive holding, in this order, an OVF 1.0
//! descriptor (DMTF envelope: one streamOptimized disk on a SATA AHCI
//! controller, CPUs, memory, an E1000 NIC, and VMware's `firmware=efi` key
//! when UEFI is asked for), the streamOptimized VMDK and a SHA256 manifest.
//! Tar headers are fixed (mode 0644, owner root:root uid/gid 0, mtime from
//! the options), so the archive is reproducible.
//!
//! VirtualBox reads the hardware items but not VMware's firmware key; it
//! imports UEFI appliances with BIOS firmware unless the user switches it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::{vmdk, write_atomic, Ctx, OvaOptions};

const BLOCK: usize = 512;
/// Largest size in the octal size field (11 digits); larger sizes use the
/// GNU base-256 encoding.
const OCTAL_MAX: u64 = 0o777_7777_7777;

/// A 512-byte ustar header for a regular file.
fn tar_header(name: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    if name.len() > 100 || name.is_empty() {
        bail!("tar member name {name:?} must be 1 to 100 bytes");
    }
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size <= OCTAL_MAX {
        octal(&mut h[124..136], size);
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[136..148], mtime.min(OCTAL_MAX));
    h[148..156].fill(b' ');
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum)); // six digits, NUL, then the space
    Ok(h)
}

/// Zero-padded octal digits filling `field` but its last byte (NUL).
fn octal(field: &mut [u8], v: u64) {
    let n = field.len() - 1;
    let s = format!("{v:0n$o}");
    field[..n].copy_from_slice(&s.as_bytes()[s.len() - n..]);
    field[n] = 0;
}

/// Appends one member, streaming its contents from `data`.
fn tar_member(
    out: &mut impl Write,
    name: &str,
    size: u64,
    mtime: u64,
    data: &mut impl Read,
) -> Result<()> {
    out.write_all(&tar_header(name, size, mtime)?)?;
    let copied = std::io::copy(&mut data.take(size), out)?;
    if copied != size {
        bail!("{name} shrank while archiving");
    }
    let pad = (size as usize).next_multiple_of(BLOCK) - size as usize;
    out.write_all(&[0u8; BLOCK][..pad])?;
    Ok(())
}

/// Name usable for files and XML identifiers.
fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("vm{s}")
    } else {
        s
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The OVF 1.0 descriptor. Element order within each `Item` follows the
/// CIM schema (alphabetical), which strict validators (ovftool) require.
fn ovf(o: &OvaOptions, id: &str, vmdk_name: &str, vmdk_size: u64, capacity: u64) -> String {
    let name = xml_escape(&o.name);
    let firmware = if o.uefi {
        "\n      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"efi\"/>"
    } else {
        ""
    };
    let items = hardware_items(o.cpus, o.memory_mib, firmware);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{vmdk_name}" ovf:id="file1" ovf:size="{vmdk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{id}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="other3xLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
      <Description>Linux 64-bit</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{id}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
{items}
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

/// The virtual hardware: CPUs, memory, the SATA controller with the disk,
/// the network adapter and the firmware setting.
fn hardware_items(cpus: u32, mem: u64, firmware: &str) -> String {
    format!(
        r#"      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{mem}MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{mem}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>SATA controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>1</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>E1000 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>{firmware}"#
    )
}

/// Removes a scratch file when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn sha256_hex(r: &mut impl Read) -> Result<String> {
    let mut h = Sha256::new();
    std::io::copy(r, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// The names of the archive's members.
struct Members {
    stem: String,
    ovf: String,
    vmdk: String,
    mf: String,
}

fn members(o: &OvaOptions) -> Members {
    let stem = file_stem(&o.name);
    Members {
        ovf: format!("{stem}.ovf"),
        vmdk: format!("{stem}-disk1.vmdk"),
        mf: format!("{stem}.mf"),
        stem,
    }
}

/// Writes the OVA for `ctx.input` to `dest`.
pub(super) fn write(ctx: &Ctx, dest: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let names = members(&ctx.opts.ova);
    // The disk goes to a scratch file first: its size and digest must be
    // known before the descriptor and the tar header are written.
    let scratch = Scratch(common::atomic::tmp_name(&dest.with_file_name(&names.vmdk)));
    let mut vf = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;
    vmdk::write_stream(ctx, &names.vmdk, &mut vf, progress)?;
    let vmdk_size = vf.metadata()?.len();
    let open = || -> Result<Box<dyn Read>> {
        let f =
            File::open(&scratch.0).with_context(|| format!("opening {}", scratch.0.display()))?;
        Ok(Box::new(f))
    };
    pack(ctx, &names, vmdk_size, &open, dest)
}

/// Writes the OVA for `ctx.input` to `dest` with the disk of `vmdk`, a
/// streamOptimized VMDK written from the same image with the same options:
/// its grains are taken as they are (not compressed again) and only its
/// embedded descriptor, which names the file, is rewritten. The result is
/// the same bytes as [`write`].
pub(super) fn write_reusing(ctx: &Ctx, vmdk_path: &Path, dest: &Path) -> Result<()> {
    let names = members(&ctx.opts.ova);
    let size = fs::metadata(vmdk_path)
        .with_context(|| format!("reading {}", vmdk_path.display()))?
        .len();
    let open = || vmdk::renamed_stream(ctx, vmdk_path, &names.vmdk);
    pack(ctx, &names, size, &open, dest)
}

/// Writes the archive: descriptor, the disk that `open` reads (`vmdk_size`
/// bytes; it is read twice, for its digest and into the archive), manifest.
fn pack(
    ctx: &Ctx,
    names: &Members,
    vmdk_size: u64,
    open: &dyn Fn() -> Result<Box<dyn Read>>,
    dest: &Path,
) -> Result<()> {
    let vmdk_sha = sha256_hex(&mut open()?)?;
    let descriptor = ovf(
        &ctx.opts.ova,
        &names.stem,
        &names.vmdk,
        vmdk_size,
        ctx.input.size,
    );
    let manifest = format!(
        "SHA256({})= {}\nSHA256({})= {vmdk_sha}\n",
        names.ovf,
        hex::encode(Sha256::digest(descriptor.as_bytes())),
        names.vmdk,
    );
    let mtime = ctx.opts.timestamp;
    write_atomic(dest, |f| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        tar_member(
            &mut w,
            &names.ovf,
            descriptor.len() as u64,
            mtime,
            &mut descriptor.as_bytes(),
        )?;
        tar_member(&mut w, &names.vmdk, vmdk_size, mtime, &mut open()?)?;
        tar_member(
            &mut w,
            &names.mf,
            manifest.len() as u64,
            mtime,
            &mut manifest.as_bytes(),
        )?;
        // End of archive: two zero blocks, then pad to a 10 KiB record.
        let body = 3 * BLOCK as u64
            + [descriptor.len() as u64, vmdk_size, manifest.len() as u64]
                .iter()
                .map(|s| s.next_multiple_of(BLOCK as u64))
                .sum::<u64>();
        let end = (body + 2 * BLOCK as u64).next_multiple_of(10240);
        std::io::copy(&mut std::io::repeat(0).take(end - body), &mut w)?;
        w.flush()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ustar_header_checksum_and_fields() {
        let h = tar_header("vm.ovf", 1234, 1_700_000_000).unwrap();
        assert_eq!(&h[..6], b"vm.ovf");
        assert_eq!(&h[124..136], b"00000002322\0");
        assert_eq!(&h[257..263], b"ustar\0");
        // Checksum: byte sum with the field read as spaces, 6 octal + NUL + ' '.
        let mut z = h;
        z[148..156].fill(b' ');
        let sum: u32 = z.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
        assert!(tar_header(&"x".repeat(101), 0, 0).is_err());
    }

    #[test]
    fn large_sizes_use_base256() {
        let h = tar_header("big", 10 << 30, 0).unwrap();
        assert_eq!(h[124], 0x80);
        assert_eq!(
            u64::from_be_bytes(h[128..136].try_into().unwrap()),
            10 << 30
        );
    }

    #[test]
    fn names_are_made_safe() {
        assert_eq!(file_stem("my vm/1"), "my_vm_1");
        assert_eq!(file_stem(""), "vm");
        assert_eq!(xml_escape("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }
}
