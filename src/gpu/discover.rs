//! Display devices as sysfs shows them (`/sys/bus/pci/devices/*`), and the choice of a
//! GPU for a session. Reading sysfs directly replaces the original's parsing of
//! `lspci -nnk`: no process per request, and the driver and IOMMU group come from the
//! kernel's own links.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// Where `pci.ids` lives on Debian (`pciutils`) and on Fedora/Arch (`hwdata`), relative
/// to the file-system root.
pub const PCI_IDS: [&str; 2] = ["usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids"];

/// The driver a device must be bound to before QEMU can take it.
pub const VFIO_DRIVER: &str = "vfio-pci";

/// PCI base class of display controllers (VGA 0x0300, 3D 0x0302, other 0x0380).
const DISPLAY_CLASS: u32 = 0x03;
/// PCI base class of bridges, which never stand in the way of an IOMMU group.
const BRIDGE_CLASS: u32 = 0x06;

/// A GPU that can be given to a virtual machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// Full PCI address, with the domain: `0000:01:00.0`.
    pub pci: String,
    /// PCI address as `lspci` prints it: `01:00.0`.
    pub short: String,
    /// Vendor id, 4 hex digits: `10de`.
    pub vendor: String,
    /// Device id, 4 hex digits: `1eb8`.
    pub device: String,
    /// From `pci.ids` (`NVIDIA Corporation TU104GL [Tesla T4]`), else `vendor:device`.
    pub name: String,
    pub iommu_group: Option<u32>,
}

impl Gpu {
    /// `vendor:device`, the form `vfio-pci.ids=` and `gpu_model` take.
    pub fn model(&self) -> String {
        format!("{}:{}", self.vendor, self.device)
    }

    /// Whether `address` (full or short form, any case) names this device.
    pub fn has_address(&self, address: &str) -> bool {
        full_address(address) == self.pci
    }
}

/// One PCI function as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// Full address, `0000:01:00.0`.
    pub address: String,
    /// 24-bit class code, e.g. `0x030000`.
    pub class: u32,
    pub vendor: String,
    pub device: String,
    /// Name of the bound driver, if any.
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
    /// The firmware used this device for the boot console (`boot_vga` is 1).
    pub boot_vga: bool,
}

impl PciFunction {
    pub fn is_display(&self) -> bool {
        self.class >> 16 == DISPLAY_CLASS
    }

    pub fn is_bridge(&self) -> bool {
        self.class >> 16 == BRIDGE_CLASS
    }

    /// `vendor:device`.
    pub fn model(&self) -> String {
        format!("{}:{}", self.vendor, self.device)
    }

    /// `domain:bus:device` without the function number: functions of one card share it.
    pub fn slot(&self) -> &str {
        self.address
            .rsplit_once('.')
            .map_or(self.address.as_str(), |(slot, _)| slot)
    }
}

/// `01:00.0` → `0000:01:00.0`; lower case, trimmed.
pub fn full_address(address: &str) -> String {
    let a = address.trim().to_ascii_lowercase();
    if a.matches(':').count() == 1 {
        format!("0000:{a}")
    } else {
        a
    }
}

/// `0000:01:00.0` → `01:00.0`.
fn short_address(full: &str) -> String {
    match full.split_once(':') {
        Some((_, rest)) if rest.contains(':') => rest.to_owned(),
        _ => full.to_owned(),
    }
}

/// Every PCI function under `sys_root/bus/pci/devices`, sorted by address. Unreadable
/// entries are skipped: a missing sysfs means no GPU, not an error.
pub fn pci_functions(sys_root: &Path) -> Vec<PciFunction> {
    let dir = sys_root.join("bus/pci/devices");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(path = %dir.display(), error = %e, "no PCI devices in sysfs");
            return Vec::new();
        }
    };
    let mut out: Vec<PciFunction> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| read_function(&entry.path()))
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    out
}

fn read_function(dir: &Path) -> Option<PciFunction> {
    let address = dir.file_name()?.to_str()?.to_ascii_lowercase();
    let hex = |name: &str| -> Option<String> {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        let text = text.trim();
        Some(text.strip_prefix("0x").unwrap_or(text).to_ascii_lowercase())
    };
    let class = u32::from_str_radix(&hex("class")?, 16).ok()?;
    let link_name = |name: &str| -> Option<String> {
        let target = std::fs::read_link(dir.join(name)).ok()?;
        Some(target.file_name()?.to_str()?.to_owned())
    };
    Some(PciFunction {
        vendor: hex("vendor")?,
        device: hex("device")?,
        class,
        driver: link_name("driver"),
        iommu_group: link_name("iommu_group").and_then(|g| g.parse().ok()),
        boot_vga: hex("boot_vga").as_deref() == Some("1"),
        address,
    })
}

/// Display devices (bound to any driver or none), with their names.
pub fn display_devices(sys_root: &Path, pci_ids: &[PathBuf]) -> Vec<(PciFunction, Gpu)> {
    let displays: Vec<PciFunction> = pci_functions(sys_root)
        .into_iter()
        .filter(PciFunction::is_display)
        .collect();
    let wanted: Vec<(String, String)> = displays
        .iter()
        .map(|f| (f.vendor.clone(), f.device.clone()))
        .collect();
    let names = lookup_names(pci_ids, &wanted);
    displays
        .into_iter()
        .map(|f| {
            let gpu = Gpu {
                pci: f.address.clone(),
                short: short_address(&f.address),
                name: names
                    .get(&(f.vendor.clone(), f.device.clone()))
                    .cloned()
                    .unwrap_or_else(|| f.model()),
                vendor: f.vendor.clone(),
                device: f.device.clone(),
                iommu_group: f.iommu_group,
            };
            (f, gpu)
        })
        .collect()
}

/// The display devices bound to `vfio-pci` under `sys_root` (normally `/sys`), named
/// from the system's `pci.ids`.
pub fn discover(sys_root: &Path) -> Vec<Gpu> {
    let ids: Vec<PathBuf> = PCI_IDS.iter().map(|p| Path::new("/").join(p)).collect();
    discover_with_ids(sys_root, &ids)
}

/// [`discover`], naming devices from the first readable file of `pci_ids`.
pub fn discover_with_ids(sys_root: &Path, pci_ids: &[PathBuf]) -> Vec<Gpu> {
    display_devices(sys_root, pci_ids)
        .into_iter()
        .filter(|(f, _)| f.driver.as_deref() == Some(VFIO_DRIVER))
        .map(|(_, gpu)| gpu)
        .collect()
}

/// Names for `(vendor, device)` pairs, read from the first readable `pci.ids`:
/// `"NVIDIA Corporation TU104GL [Tesla T4]"`, as `lspci` prints them.
fn lookup_names(
    pci_ids: &[PathBuf],
    wanted: &[(String, String)],
) -> HashMap<(String, String), String> {
    let mut names = HashMap::new();
    if wanted.is_empty() {
        return names;
    }
    let Some(file) = pci_ids.iter().find_map(|p| std::fs::File::open(p).ok()) else {
        return names;
    };
    let mut vendor: Option<(String, String)> = None;
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        if line.starts_with('#') || line.trim().is_empty() || line.starts_with("\t\t") {
            continue;
        }
        // Device classes follow the vendors; nothing more to find.
        if line.starts_with("C ") {
            break;
        }
        if let Some(rest) = line.strip_prefix('\t') {
            let Some((vid, vname)) = &vendor else {
                continue;
            };
            if let Some((id, name)) = rest.split_once("  ") {
                let key = (vid.clone(), id.trim().to_ascii_lowercase());
                if wanted.contains(&key) {
                    names.insert(key, format!("{vname} {}", name.trim()));
                }
            }
        } else if let Some((id, name)) = line.split_once("  ") {
            let id = id.trim().to_ascii_lowercase();
            vendor = wanted
                .iter()
                .any(|(v, _)| *v == id)
                .then(|| (id, name.trim().to_owned()));
        }
    }
    names
}

fn config_list(value: &str, separators: &[char]) -> Option<Vec<String>> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("auto") {
        return None;
    }
    Some(
        value
            .split(separators)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// The GPUs sessions may use: discovered ones, unless the configuration names them.
///
/// - `gpu_pci` (addresses, comma or space separated) is authoritative: those devices, in
///   that order, described from sysfs when present, else from `gpu_model` and `gpu_name`
///   at the same position.
/// - Otherwise the vfio-bound display devices, kept only if their `vendor:device` is in
///   `gpu_model` and their name contains one of `gpu_name` (entries separated by `;`,
///   since names hold commas and spaces).
pub fn configured(config: &Config, sys_root: &Path) -> Vec<Gpu> {
    let ids: Vec<PathBuf> = PCI_IDS.iter().map(|p| Path::new("/").join(p)).collect();
    configured_with_ids(config, sys_root, &ids)
}

/// [`configured`], naming devices from the first readable file of `pci_ids`.
pub fn configured_with_ids(config: &Config, sys_root: &Path, pci_ids: &[PathBuf]) -> Vec<Gpu> {
    let models = config_list(&config.gpu_model, &[',', ' ', '\t']);
    let names = config_list(&config.gpu_name, &[';', '\n']);
    let Some(addresses) = config_list(&config.gpu_pci, &[',', ' ', '\t']) else {
        return discover_with_ids(sys_root, pci_ids)
            .into_iter()
            .filter(|g| {
                models
                    .as_ref()
                    .is_none_or(|m| m.iter().any(|m| m.eq_ignore_ascii_case(&g.model())))
            })
            .filter(|g| {
                let name = g.name.to_ascii_lowercase();
                names
                    .as_ref()
                    .is_none_or(|n| n.iter().any(|n| name.contains(&n.to_ascii_lowercase())))
            })
            .collect();
    };
    let present = display_devices(sys_root, pci_ids);
    addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let pci = full_address(address);
            if let Some((f, gpu)) = present.iter().find(|(f, _)| f.address == pci) {
                if f.driver.as_deref() != Some(VFIO_DRIVER) {
                    tracing::warn!(pci = %pci, driver = ?f.driver, "configured GPU is not bound to vfio-pci");
                }
                return gpu.clone();
            }
            tracing::warn!(pci = %pci, "configured GPU not found in sysfs");
            let model = models.as_ref().and_then(|m| m.get(i));
            let (vendor, device) = model
                .and_then(|m| m.split_once(':'))
                .map_or((String::new(), String::new()), |(v, d)| {
                    (v.to_ascii_lowercase(), d.to_ascii_lowercase())
                });
            let name = names
                .as_ref()
                .and_then(|n| n.get(i).cloned())
                .or_else(|| model.cloned())
                .unwrap_or_else(|| pci.clone());
            Gpu {
                short: short_address(&pci),
                pci,
                vendor,
                device,
                name,
                iommu_group: None,
            }
        })
        .collect()
}

/// The first GPU neither used by a live session nor blacklisted. `in_use` and
/// `blacklist` hold addresses in full (`0000:01:00.0`) or short (`01:00.0`) form;
/// every blacklist entry counts.
pub fn pick_free<'a>(gpus: &'a [Gpu], in_use: &[String], blacklist: &[String]) -> Option<&'a Gpu> {
    gpus.iter().find(|g| {
        !in_use.iter().any(|a| g.has_address(a)) && !blacklist.iter().any(|a| g.has_address(a))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs: `add` creates `bus/pci/devices/<address>` with the class, ids and
    /// the `driver`/`iommu_group` links the kernel would make.
    pub(crate) struct FakeSys(pub PathBuf);

    impl FakeSys {
        pub(crate) fn new(root: &Path) -> Self {
            let sys = root.join("sys");
            std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
            Self(sys)
        }

        #[allow(clippy::too_many_arguments)]
        pub(crate) fn add(
            &self,
            address: &str,
            class: &str,
            vendor: &str,
            device: &str,
            driver: Option<&str>,
            group: Option<u32>,
            boot_vga: bool,
        ) {
            let dir = self.0.join("bus/pci/devices").join(address);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("class"), format!("{class}\n")).unwrap();
            std::fs::write(dir.join("vendor"), format!("0x{vendor}\n")).unwrap();
            std::fs::write(dir.join("device"), format!("0x{device}\n")).unwrap();
            if class.starts_with("0x0300") {
                let flag = if boot_vga { "1" } else { "0" };
                std::fs::write(dir.join("boot_vga"), format!("{flag}\n")).unwrap();
            }
            if let Some(driver) = driver {
                let target = self.0.join("bus/pci/drivers").join(driver);
                std::fs::create_dir_all(&target).unwrap();
                symlink(&target, dir.join("driver")).unwrap();
            }
            if let Some(group) = group {
                let target = self.0.join("kernel/iommu_groups").join(group.to_string());
                std::fs::create_dir_all(&target).unwrap();
                symlink(&target, dir.join("iommu_group")).unwrap();
            }
        }
    }

    const PCI_IDS_TEXT: &str = "# pci.ids excerpt\n10de  NVIDIA Corporation\n\t1eb8  TU104GL [Tesla T4]\n\t\t10de 12a2  Tesla T4\n\t10f8  TU104 HD Audio Controller\n1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\t67df  Ellesmere [Radeon RX 470/480/570/570X/580/580X/590]\nC 03  Display controller\n\t00  VGA compatible controller\n";

    /// Two vfio display devices, one on nouveau, one audio function and a bridge.
    fn host() -> (tempfile::TempDir, FakeSys, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sys = FakeSys::new(dir.path());
        sys.add(
            "0000:00:02.0",
            "0x030000",
            "8086",
            "3e92",
            Some("i915"),
            Some(0),
            true,
        );
        sys.add(
            "0000:00:01.0",
            "0x060400",
            "8086",
            "1901",
            Some("pcieport"),
            Some(1),
            false,
        );
        sys.add(
            "0000:01:00.0",
            "0x030000",
            "10de",
            "1eb8",
            Some("vfio-pci"),
            Some(12),
            false,
        );
        sys.add(
            "0000:01:00.1",
            "0x040300",
            "10de",
            "10f8",
            Some("vfio-pci"),
            Some(12),
            false,
        );
        sys.add(
            "0000:02:00.0",
            "0x030200",
            "10de",
            "1eb8",
            Some("vfio-pci"),
            Some(13),
            false,
        );
        sys.add(
            "0000:03:00.0",
            "0x030000",
            "10de",
            "1eb8",
            Some("nouveau"),
            Some(14),
            false,
        );
        sys.add(
            "0000:04:00.0",
            "0x038000",
            "1002",
            "67df",
            Some("vfio-pci"),
            None,
            false,
        );
        let ids = dir.path().join("pci.ids");
        std::fs::write(&ids, PCI_IDS_TEXT).unwrap();
        (dir, sys, ids)
    }

    #[test]
    fn finds_vfio_display_devices_only() {
        let (_dir, sys, ids) = host();
        let gpus = discover_with_ids(&sys.0, &[PathBuf::from("/nonexistent"), ids]);
        let addresses: Vec<&str> = gpus.iter().map(|g| g.pci.as_str()).collect();
        // 00:02.0 is on i915, 03:00.0 on nouveau, 01:00.1 is audio, 00:01.0 a bridge.
        assert_eq!(addresses, ["0000:01:00.0", "0000:02:00.0", "0000:04:00.0"]);
        assert_eq!(
            gpus[0],
            Gpu {
                pci: "0000:01:00.0".into(),
                short: "01:00.0".into(),
                vendor: "10de".into(),
                device: "1eb8".into(),
                name: "NVIDIA Corporation TU104GL [Tesla T4]".into(),
                iommu_group: Some(12),
            }
        );
        assert_eq!(gpus[1].iommu_group, Some(13));
        assert_eq!(
            gpus[2].name,
            "Advanced Micro Devices, Inc. [AMD/ATI] Ellesmere [Radeon RX 470/480/570/570X/580/580X/590]"
        );
        assert_eq!(gpus[2].iommu_group, None);
    }

    #[test]
    fn names_fall_back_to_ids() {
        let (_dir, sys, _ids) = host();
        let gpus = discover_with_ids(&sys.0, &[PathBuf::from("/nonexistent/pci.ids")]);
        assert_eq!(gpus[0].name, "10de:1eb8");
        assert_eq!(gpus[0].model(), "10de:1eb8");
    }

    #[test]
    fn no_sysfs_no_gpu() {
        let dir = tempfile::tempdir().unwrap();
        assert!(discover(&dir.path().join("sys")).is_empty());
    }

    #[test]
    fn functions_keep_driver_group_and_boot_flag() {
        let (_dir, sys, _ids) = host();
        let all = pci_functions(&sys.0);
        assert_eq!(all.len(), 7);
        let boot = all.iter().find(|f| f.boot_vga).unwrap();
        assert_eq!(boot.address, "0000:00:02.0");
        assert_eq!(boot.driver.as_deref(), Some("i915"));
        let audio = all.iter().find(|f| f.address == "0000:01:00.1").unwrap();
        assert!(!audio.is_display());
        assert_eq!(audio.slot(), "0000:01:00");
        assert!(all.iter().any(PciFunction::is_bridge));
    }

    fn gpu(pci: &str) -> Gpu {
        Gpu {
            pci: pci.into(),
            short: short_address(pci),
            vendor: "10de".into(),
            device: "1eb8".into(),
            name: "x".into(),
            iommu_group: None,
        }
    }

    #[test]
    fn pick_free_skips_used_and_every_blacklisted_address() {
        let gpus = [
            gpu("0000:01:00.0"),
            gpu("0000:02:00.0"),
            gpu("0000:03:00.0"),
            gpu("0000:04:00.0"),
        ];
        let none: [String; 0] = [];
        assert_eq!(pick_free(&gpus, &none, &none).unwrap().short, "01:00.0");
        let used = ["0000:01:00.0".to_owned()];
        assert_eq!(pick_free(&gpus, &used, &none).unwrap().short, "02:00.0");
        let used = ["01:00.0".to_owned()];
        assert_eq!(pick_free(&gpus, &used, &none).unwrap().short, "02:00.0");
        // Two entries, short and full form: both hold.
        let blacklist = ["02:00.0".to_owned(), "0000:03:00.0".to_owned()];
        assert_eq!(
            pick_free(&gpus, &used, &blacklist).unwrap().short,
            "04:00.0"
        );
        let used = ["01:00.0".to_owned(), "0000:04:00.0".to_owned()];
        assert_eq!(pick_free(&gpus, &used, &blacklist), None);
    }

    #[test]
    fn blacklist_from_the_configuration_string() {
        let c = Config::parse("gpu_blacklist = \"06:05.0,00:1b.0\"").unwrap();
        let gpus = [
            gpu("0000:00:1b.0"),
            gpu("0000:06:05.0"),
            gpu("0000:07:00.0"),
        ];
        assert_eq!(
            pick_free(&gpus, &[], &c.gpu_blacklist).unwrap().short,
            "07:00.0"
        );
    }

    #[test]
    fn configuration_filters_and_lists() {
        let (_dir, sys, ids) = host();
        let ids = [ids];
        let auto = Config::default();
        assert_eq!(configured_with_ids(&auto, &sys.0, &ids).len(), 3);
        let by_model = Config {
            gpu_model: "1002:67DF".into(),
            ..Config::default()
        };
        let gpus = configured_with_ids(&by_model, &sys.0, &ids);
        let shorts: Vec<&str> = gpus.iter().map(|g| g.short.as_str()).collect();
        assert_eq!(shorts, ["04:00.0"]);
        let by_name = Config {
            gpu_name: "no such card; tesla t4".into(),
            ..Config::default()
        };
        let gpus = configured_with_ids(&by_name, &sys.0, &ids);
        let shorts: Vec<&str> = gpus.iter().map(|g| g.short.as_str()).collect();
        assert_eq!(shorts, ["01:00.0", "02:00.0"]);
        let listed = Config {
            gpu_pci: "02:00.0, 0000:09:00.0 03:00.0".into(),
            gpu_model: "10de:1eb8,10DE:2204".into(),
            gpu_name: "first;Spare card;third".into(),
            ..Config::default()
        };
        let gpus = configured_with_ids(&listed, &sys.0, &ids);
        let addresses: Vec<&str> = gpus.iter().map(|g| g.pci.as_str()).collect();
        assert_eq!(addresses, ["0000:02:00.0", "0000:09:00.0", "0000:03:00.0"]);
        assert_eq!(gpus[0].iommu_group, Some(13), "described from sysfs");
        assert_eq!(gpus[0].name, "NVIDIA Corporation TU104GL [Tesla T4]");
        assert_eq!(
            gpus[1].name, "Spare card",
            "absent from sysfs: from gpu_name"
        );
        assert_eq!(gpus[1].model(), "10de:2204", "and from gpu_model");
        assert_eq!(gpus[1].short, "09:00.0");
    }
}
