//! GPU pass-through: when GPUs are offered, each must be bound to `vfio-pci`, in an
//! IOMMU group whose `/dev/vfio` node the service may open.

use std::path::Path;

use super::host::{describe, Identity};
use super::Check;
use crate::config::Config;
use crate::gpu::discover::{self, VFIO_DRIVER};

/// Whether the configuration offers GPUs at all.
fn wanted(config: &Config) -> bool {
    let set = |v: &str| {
        let v = v.trim();
        !v.is_empty() && !v.eq_ignore_ascii_case("auto")
    };
    config.layout_gpu || set(&config.gpu_pci)
}

pub fn gpus(config: &Config, who: &Identity, root: &Path) -> Vec<Check> {
    if !wanted(config) {
        return vec![Check::ok(
            "gpu",
            "not offered (layout_gpu = false, gpu_pci = auto)",
        )];
    }
    let sys = root.join("sys");
    let found = crate::gpu::configured(config, &sys);
    if found.is_empty() {
        return vec![Check::fail(
            "gpu",
            "GPUs are offered but no display device is bound to vfio-pci",
            "darts gpu (prints the host set-up; --apply writes it), then reboot",
        )];
    }
    let functions = discover::pci_functions(&sys);
    found
        .iter()
        .map(|g| {
            let driver = functions
                .iter()
                .find(|f| f.address == g.pci)
                .and_then(|f| f.driver.clone());
            if driver.as_deref() != Some(VFIO_DRIVER) {
                return Check::fail(
                    "gpu",
                    format!(
                        "{} {} is bound to {} instead of vfio-pci",
                        g.pci,
                        g.name,
                        driver.as_deref().unwrap_or("no driver")
                    ),
                    format!("darts gpu {} --apply, then reboot", g.model()),
                );
            }
            let Some(group) = g.iommu_group else {
                return Check::fail(
                    "gpu",
                    format!("{} {} has no IOMMU group", g.pci, g.name),
                    "turn the IOMMU on (intel_iommu=on or amd_iommu=on; darts gpu --apply does it)",
                );
            };
            let node = root.join("dev/vfio").join(group.to_string());
            match std::fs::metadata(&node) {
                Ok(m) if who.may(&m, 6) => Check::ok(
                    "gpu",
                    format!("{} {} (vfio-pci, {})", g.pci, g.name, node.display()),
                ),
                Ok(m) => Check::fail(
                    "gpu",
                    format!(
                        "{} cannot open {} ({})",
                        who.name,
                        node.display(),
                        describe(&m, root)
                    ),
                    format!(
                        "darts gpu --apply installs a udev rule giving /dev/vfio to group kvm; adduser {} kvm",
                        who.name
                    ),
                ),
                Err(_) => Check::fail(
                    "gpu",
                    format!("{} does not exist", node.display()),
                    "modprobe vfio-pci, or reboot after darts gpu --apply",
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn gpus_are_checked_only_when_offered() {
        let root = tempfile::tempdir().unwrap();
        let who = super::super::host::current();
        let c = gpus(&Config::default(), &who, root.path());
        assert_eq!(c[0].status, Status::Ok);
        let offered = Config {
            layout_gpu: true,
            ..Config::default()
        };
        // An empty sysfs: nothing bound to vfio-pci.
        let c = gpus(&offered, &who, root.path());
        assert_eq!(c[0].status, Status::Fail);
        assert!(c[0].hint.as_deref().unwrap().starts_with("darts gpu"));
    }
}
