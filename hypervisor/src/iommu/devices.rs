//! The PCI functions the guest may have, as the IOMMU's protection needs them. The IOMMU
//! translates every device ID's DMA, but a device model can bypass it: QEMU routes a virtio
//! device's DMA through the IOMMU only when the device offers VIRTIO_F_ACCESS_PLATFORM
//! (feature bit 33, QEMU's `iommu_platform=on`); without it the device reads and writes
//! physical memory directly, the hypervisor's included. The QEMU command line is the host's,
//! and the host is not trusted, so before the guest runs the hypervisor checks bus 0: every
//! function must be one it knows to send its DMA through the IOMMU ([`ALLOWED`], the IOMMU
//! itself, and modern virtio devices that offer VIRTIO_F_ACCESS_PLATFORM), and no function
//! may be a bridge (whose buses the check would not see).
//!
//! Facts cite the Virtual I/O Device (VIRTIO) Specification 1.2 ("virtio"): §4.1.2 PCI
//! device discovery (device IDs 0x1000-0x103F are transitional, with the legacy interface;
//! modern ones are 0x1040 + the device type), §4.1.4 the vendor-specific capabilities that
//! locate each structure (`cfg_type` at +3, `bar` at +4, `offset` at +8), §4.1.4.3 the
//! common configuration structure (`device_feature_select` at 0x00, `device_feature` at
//! 0x04), §6 VIRTIO_F_ACCESS_PLATFORM.

use core::fmt;

/// The functions, other than the IOMMU and virtio devices, allowed on bus 0 (vendor, device,
/// what): QEMU's q35 chipset and the devices vpr's machines attach, all of whose DMA QEMU
/// sends through the IOMMU (`pci_dma_*`).
pub const ALLOWED: &[(u16, u16, &str)] = &[
    (0x8086, 0x29C0, "the Q35 host bridge (MCH)"),
    (0x8086, 0x2918, "the ICH9 LPC bridge"),
    (0x8086, 0x2922, "the ICH9 AHCI controller"),
    (0x8086, 0x2930, "the ICH9 SMBus controller"),
    (0x1234, 0x11E8, "QEMU's edu test device (linux-test's DMA engine)"),
];
/// Header type 1 and 2 (PCI Local Bus 3.0 §6.1; PCI-to-PCI and CardBus bridges).
const HEADER_TYPE_MASK: u32 = 0x7F;

/// The virtio vendor ID (virtio §4.1.2).
const VIRTIO_VENDOR: u32 = 0x1AF4;
/// The first modern (non-transitional) device ID: 0x1040 + the device type (virtio §4.1.2).
const FIRST_MODERN_ID: u32 = 0x1040;
/// The last device ID the virtio specification assigns (0x1040 + 63 device types).
const LAST_VIRTIO_ID: u32 = 0x107F;
/// The vendor-specific capability ID (PCI Code and ID Assignment §2).
const CAPABILITY_VENDOR: u32 = 0x09;
/// `cfg_type` of the common configuration structure (virtio §4.1.4).
const COMMON_CFG: u8 = 1;
/// The common configuration's feature window (virtio §4.1.4.3).
const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
/// VIRTIO_F_ACCESS_PLATFORM (bit 33): bit 1 of feature dword 1 (virtio §6).
const ACCESS_PLATFORM_DWORD: u32 = 1;
const ACCESS_PLATFORM_BIT: u32 = 1 << 1;
/// Capability entries followed before a list is taken to loop.
const MAX_CAPABILITIES: usize = 48;

/// What the check reads and writes: bus 0's configuration space and the devices' memory
/// BARs (the image: ports 0xCF8/0xCFC and identity-mapped MMIO).
pub trait Bus {
    /// The configuration dword at `register` (dword-aligned) of `device`/`function` (all
    /// ones where no function answers).
    fn config_read(&mut self, device: u8, function: u8, register: u8) -> u32;
    /// The 32-bit register at physical `address` of a device, or `None` if the hypervisor
    /// will not touch that address (not a device's window).
    fn mmio_read(&mut self, address: u64) -> Option<u32>;
    /// Writes the 32-bit register at physical `address`; `false` as for [`Bus::mmio_read`].
    fn mmio_write(&mut self, address: u64, value: u32) -> bool;
}

/// A function that could bypass the IOMMU, or that the hypervisor cannot check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// A transitional device (ID 0x1000-0x103F): it has the legacy interface too (QEMU's
    /// `disable-legacy=on` removes it).
    Transitional {
        /// The function (device, function).
        at: (u8, u8),
        /// Its device ID.
        id: u16,
    },
    /// No common configuration capability (or a malformed capability list).
    NoCommonConfiguration {
        /// The function.
        at: (u8, u8),
    },
    /// The common configuration is in a BAR that is not a memory BAR below 4 GiB, not
    /// enabled, or at an address the hypervisor will not touch.
    Unreachable {
        /// The function.
        at: (u8, u8),
        /// The BAR index the capability names.
        bar: u8,
    },
    /// A function that is neither allowed nor the IOMMU nor virtio.
    Unknown {
        /// The function.
        at: (u8, u8),
        /// Its vendor and device IDs.
        id: (u16, u16),
    },
    /// A bridge: functions behind it are on buses the check does not walk.
    Bridge {
        /// The function.
        at: (u8, u8),
    },
    /// The device does not offer VIRTIO_F_ACCESS_PLATFORM: its DMA bypasses the IOMMU.
    BypassesIommu {
        /// The function.
        at: (u8, u8),
        /// Its device ID.
        id: u16,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DeviceError::Unknown { at, id } => write!(
                f,
                "PCI function 00:{:02x}.{} ({:04x}:{:04x}) is not one the hypervisor knows to send \
                 its DMA through the IOMMU",
                at.0, at.1, id.0, id.1
            ),
            DeviceError::Bridge { at } => write!(
                f,
                "PCI function 00:{:02x}.{} is a bridge: the devices behind it are not checked",
                at.0, at.1
            ),
            DeviceError::Transitional { at, id } => write!(
                f,
                "virtio function 00:{:02x}.{} (device {id:#06x}) is transitional: start it \
                 with disable-legacy=on",
                at.0, at.1
            ),
            DeviceError::NoCommonConfiguration { at } => write!(
                f,
                "virtio function 00:{:02x}.{} has no common configuration to check",
                at.0, at.1
            ),
            DeviceError::Unreachable { at, bar } => write!(
                f,
                "virtio function 00:{:02x}.{}: its common configuration (BAR {bar}) is not a \
                 memory window below 4 GiB the hypervisor can read",
                at.0, at.1
            ),
            DeviceError::BypassesIommu { at, id } => write!(
                f,
                "virtio function 00:{:02x}.{} (device {id:#06x}) does not offer \
                 VIRTIO_F_ACCESS_PLATFORM: its DMA would bypass the IOMMU (start it with \
                 iommu_platform=on)",
                at.0, at.1
            ),
        }
    }
}

/// Checks every function on bus 0: no bridge; each one of [`ALLOWED`], the IOMMU
/// (`iommu`: device, function), or a modern-only virtio device offering
/// VIRTIO_F_ACCESS_PLATFORM. How many virtio functions were checked, or the first function
/// that fails. A virtio device's feature select register is left at 0, where the firmware
/// left it.
pub fn check(bus: &mut impl Bus, iommu: (u8, u8)) -> Result<usize, DeviceError> {
    let mut checked = 0;
    for device in 0..32u8 {
        for function in 0..8u8 {
            // Every function number, whether or not function 0 is there or says it has
            // others: QEMU attaches a device at function 3 of an empty slot, which the
            // firmware and Linux skip but the guest can drive through 0xCF8/0xCFC.
            let id = bus.config_read(device, function, 0x00);
            if id & 0xFFFF == 0xFFFF {
                continue;
            }
            let at = (device, function);
            let header = bus.config_read(device, function, 0x0C) >> 16;
            if header & HEADER_TYPE_MASK != 0 {
                return Err(DeviceError::Bridge { at });
            }
            let (vendor, device_id) = (id & 0xFFFF, id >> 16);
            let short = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
            if vendor == VIRTIO_VENDOR {
                check_function(bus, at, device_id)?;
                checked += 1;
            } else if at != iommu
                && !ALLOWED
                    .iter()
                    .any(|&(v, d, _)| (u32::from(v), u32::from(d)) == (vendor, device_id))
            {
                return Err(DeviceError::Unknown { at, id: (short(vendor), short(device_id)) });
            }
        }
    }
    Ok(checked)
}

/// Checks one virtio function with device ID `id`.
fn check_function(bus: &mut impl Bus, at: (u8, u8), id: u32) -> Result<(), DeviceError> {
    let short = u16::try_from(id).unwrap_or(u16::MAX);
    if id < FIRST_MODERN_ID {
        return Err(DeviceError::Transitional { at, id: short });
    }
    if id > LAST_VIRTIO_ID {
        // Not a virtio device ID (virtio §4.1.2): nothing of virtio's to check, but nothing
        // the hypervisor knows either.
        return Err(DeviceError::NoCommonConfiguration { at });
    }
    let (bar, offset) = common_configuration(bus, at)?;
    let base = memory_bar(bus, at, bar).ok_or(DeviceError::Unreachable { at, bar })?;
    let common = base.checked_add(u64::from(offset)).ok_or(DeviceError::Unreachable { at, bar })?;
    let unreachable = DeviceError::Unreachable { at, bar };
    if !bus.mmio_write(common + DEVICE_FEATURE_SELECT, ACCESS_PLATFORM_DWORD) {
        return Err(unreachable);
    }
    let features = bus.mmio_read(common + DEVICE_FEATURE);
    bus.mmio_write(common + DEVICE_FEATURE_SELECT, 0);
    match features {
        None => Err(unreachable),
        Some(dword) if dword & ACCESS_PLATFORM_BIT == 0 => {
            Err(DeviceError::BypassesIommu { at, id: short })
        }
        Some(_) => Ok(()),
    }
}

/// The BAR index and offset of the function's common configuration structure (the first
/// vendor capability with `cfg_type` 1; virtio §4.1.4).
fn common_configuration(bus: &mut impl Bus, at: (u8, u8)) -> Result<(u8, u32), DeviceError> {
    let (device, function) = at;
    let missing = DeviceError::NoCommonConfiguration { at };
    // Status bit 4: a capability list (PCI Local Bus 3.0 §6.7).
    if bus.config_read(device, function, 0x04) >> 16 & 1 << 4 == 0 {
        return Err(missing);
    }
    let mut pointer = bus.config_read(device, function, 0x34).to_le_bytes()[0] & 0xFC;
    for _ in 0..MAX_CAPABILITIES {
        if pointer < 0x40 {
            return Err(missing);
        }
        let header = bus.config_read(device, function, pointer);
        let [id, next, _, cfg_type] = header.to_le_bytes();
        if u32::from(id) == CAPABILITY_VENDOR && cfg_type == COMMON_CFG {
            let bar_at = pointer.checked_add(4).ok_or(missing)?;
            let offset_at = pointer.checked_add(8).ok_or(missing)?;
            let bar = bus.config_read(device, function, bar_at).to_le_bytes()[0];
            let offset = bus.config_read(device, function, offset_at);
            return Ok((bar, offset));
        }
        pointer = next & 0xFC;
    }
    Err(missing)
}

/// The base of memory BAR `bar` of the function if it is a memory BAR below 4 GiB (a 64-bit
/// one with a zero upper half) and memory decoding is on (PCI Local Bus 3.0 §6.2.2 command
/// bit 1, §6.2.5.1 BARs).
fn memory_bar(bus: &mut impl Bus, at: (u8, u8), bar: u8) -> Option<u64> {
    let (device, function) = at;
    if bar > 5 || bus.config_read(device, function, 0x04) & 1 << 1 == 0 {
        return None;
    }
    let register = 0x10 + 4 * bar;
    let low = bus.config_read(device, function, register);
    if low & 1 != 0 {
        return None; // an I/O BAR
    }
    let upper = match (low >> 1) & 0b11 {
        0b00 => 0,
        0b10 if bar < 5 => bus.config_read(device, function, register + 4),
        _ => return None,
    };
    let base = u64::from(low & 0xFFFF_FFF0);
    (upper == 0 && base != 0).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    /// Bus 0 as QEMU's `q35` has it with a modern virtio-net at 2.0 (vendor capabilities at
    /// 0x84 (common configuration, BAR 4 offset 0) and 0x70 (notifications); BAR 4 64-bit at
    /// 0xFEBF_C000) whose feature dword 1 is `features_high`.
    struct Machine {
        config: BTreeMap<(u8, u8, u8), u32>,
        features_high: u32,
        select: u32,
        writes: Vec<(u64, u32)>,
        window: (u64, u64),
    }

    impl Machine {
        fn q35(id: u32, features_high: u32) -> Machine {
            let mut config = BTreeMap::new();
            config.insert((0, 0, 0x00), 0x29C0_8086);
            config.insert((0, 0, 0x0C), 0);
            config.insert((2, 0, 0x00), id << 16 | 0x1AF4);
            config.insert((2, 0, 0x04), 0x0010_0007);
            config.insert((2, 0, 0x0C), 0);
            config.insert((2, 0, 0x20), 0xFEBF_C00C);
            config.insert((2, 0, 0x24), 0);
            config.insert((2, 0, 0x34), 0x70);
            config.insert((2, 0, 0x70), 0x0200_8409); // notifications, next 0x84
            config.insert((2, 0, 0x84), 0x0100_0009); // common configuration, last
            config.insert((2, 0, 0x88), 4);
            config.insert((2, 0, 0x8C), 0);
            config.insert((31, 0, 0x00), 0x2918_8086);
            config.insert((31, 0, 0x0C), 0x0080_0000);
            config.insert((31, 2, 0x00), 0x2922_8086);
            Machine {
                config,
                features_high,
                select: 0,
                writes: Vec::new(),
                window: (0xFEB0_0000, 0xFEC0_0000),
            }
        }
    }

    impl Bus for Machine {
        fn config_read(&mut self, device: u8, function: u8, register: u8) -> u32 {
            let absent = if register == 0 { u32::MAX } else { 0 };
            self.config.get(&(device, function, register)).copied().unwrap_or(absent)
        }

        fn mmio_read(&mut self, address: u64) -> Option<u32> {
            if !(self.window.0..self.window.1).contains(&address) {
                return None;
            }
            Some(match (address, self.select) {
                (0xFEBF_C004, 1) => self.features_high,
                (0xFEBF_C004, _) => 0x3000_0000,
                _ => 0,
            })
        }

        fn mmio_write(&mut self, address: u64, value: u32) -> bool {
            if !(self.window.0..self.window.1).contains(&address) {
                return false;
            }
            self.writes.push((address, value));
            if address == 0xFEBF_C000 {
                self.select = value;
            }
            true
        }
    }

    #[test]
    fn a_modern_device_offering_access_platform_passes() {
        let mut machine = Machine::q35(0x1041, 0b11);
        assert_eq!(check(&mut machine, (1, 0)), Ok(1));
        // Feature dword 1 selected, then the select register put back to 0.
        assert_eq!(machine.writes, [(0xFEBF_C000, 1), (0xFEBF_C000, 0)]);
    }

    #[test]
    fn a_device_without_access_platform_is_refused() {
        let mut machine = Machine::q35(0x1041, 0b01);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::BypassesIommu { at: (2, 0), id: 0x1041 })
        );
        assert_eq!(machine.select, 0);
    }

    #[test]
    fn a_transitional_device_is_refused() {
        let mut machine = Machine::q35(0x1000, 0b11);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::Transitional { at: (2, 0), id: 0x1000 })
        );
        assert!(machine.writes.is_empty());
    }

    #[test]
    fn a_machine_without_virtio_checks_nothing() {
        let mut machine = Machine::q35(0x1041, 0);
        machine.config.retain(|&(device, _, _), _| device != 2);
        assert_eq!(check(&mut machine, (1, 0)), Ok(0));
    }

    #[test]
    fn windows_the_hypervisor_will_not_touch_are_refused() {
        // The BAR moved out of the device window the bus allows.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((2, 0, 0x20), 0x0010_000C);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::Unreachable { at: (2, 0), bar: 4 })
        );
        // Above 4 GiB.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((2, 0, 0x24), 1);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::Unreachable { at: (2, 0), bar: 4 })
        );
        // Memory decoding off.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((2, 0, 0x04), 0x0010_0004);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::Unreachable { at: (2, 0), bar: 4 })
        );
        // A BAR index past the last BAR.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((2, 0, 0x88), 6);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::Unreachable { at: (2, 0), bar: 6 })
        );
    }

    #[test]
    fn only_known_functions_and_no_bridges_are_allowed() {
        // The IOMMU's function is allowed where it is, and nowhere else.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((1, 0, 0x00), 0x0008_1022);
        machine.config.insert((1, 0, 0x0C), 0);
        assert_eq!(check(&mut machine, (1, 0)), Ok(1));
        assert_eq!(
            check(&mut machine, (5, 0)),
            Err(DeviceError::Unknown { at: (1, 0), id: (0x1022, 0x0008) })
        );
        // Another device: refused.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((4, 0, 0x00), 0x100E_8086);
        machine.config.insert((4, 0, 0x0C), 0);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::Unknown { at: (4, 0), id: (0x8086, 0x100E) })
        );
        // A PCI-to-PCI bridge (header type 1), even of a known vendor: refused.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((3, 0, 0x00), 0x000C_1B36);
        machine.config.insert((3, 0, 0x0C), 0x0001_0000);
        assert_eq!(check(&mut machine, (1, 0)), Err(DeviceError::Bridge { at: (3, 0) }));
        // The LPC bridge's other functions (AHCI at 31.2): allowed.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((31, 3, 0x00), 0x2930_8086);
        assert_eq!(check(&mut machine, (1, 0)), Ok(1));
    }

    #[test]
    fn a_function_in_a_slot_without_function_0_is_checked() {
        // A transitional virtio device at 5.3, nothing at 5.0.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((5, 3, 0x00), 0x1005_1AF4);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::Transitional { at: (5, 3), id: 0x1005 })
        );
        // An unknown device at 2.1 of the single-function virtio device.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((2, 1, 0x00), 0x100E_8086);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::Unknown { at: (2, 1), id: (0x8086, 0x100E) })
        );
    }

    #[test]
    fn malformed_capability_lists_are_refused() {
        // No capability list.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((2, 0, 0x04), 0x0000_0007);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::NoCommonConfiguration { at: (2, 0) })
        );
        // A list that loops without a common configuration.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((2, 0, 0x84), 0x0200_7009);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::NoCommonConfiguration { at: (2, 0) })
        );
        // A capability at the last dword: its fields would lie past the configuration space.
        let mut machine = Machine::q35(0x1041, 0b11);
        machine.config.insert((2, 0, 0x34), 0xFC);
        machine.config.insert((2, 0, 0xFC), 0x0100_0009);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::NoCommonConfiguration { at: (2, 0) })
        );
        // Not a virtio device ID at all.
        let mut machine = Machine::q35(0x1100, 0b11);
        assert_eq!(
            check(&mut machine, (1, 0)),
            Err(DeviceError::NoCommonConfiguration { at: (2, 0) })
        );
    }
}
