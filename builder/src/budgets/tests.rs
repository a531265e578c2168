use super::*;
use crate::model::metadata::fixtures::fixture;
use crate::model::Problems;

fn budgets(toml_text: &str) -> Result<Budgets, Vec<(String, String)>> {
    let raw: RawBudgets = toml::from_str(toml_text).unwrap();
    let mut p = Problems::new();
    let b = check(raw, &["qcow2".to_string()], &mut p.scope("budgets"));
    if p.is_empty() {
        Ok(b)
    } else {
        Err(p.into_vec())
    }
}

#[test]
fn a_one_mib_size_budget_fails_naming_the_budget_figure_and_top_packages() {
    let meta = fixture(
        "1",
        "c",
        &[
            ("bash", "5.2", 7000),
            ("linux-image", "6.1", 400_000),
            ("jq", "1", 100),
        ],
        1 << 30,
    );
    let b = budgets("raw_allocated = \"1MiB\"\n").unwrap();
    let miss = check_build(&b, &meta);
    assert_eq!(miss.len(), 1, "{miss:?}");
    let text = miss[0].to_string();
    assert_eq!(miss[0].rule, "raw_allocated");
    assert!(!miss[0].warning);
    assert!(text.contains("1024.0 MiB over 1.0 MiB"), "{text}");
    assert!(
        text.contains("largest contributors: linux-image 390.6 MiB, bash 6.8 MiB, jq 0.1 MiB"),
        "{text}"
    );
}

#[test]
fn budgets_that_hold_pass_and_report_their_figures() {
    let meta = fixture("1", "c", &[("bash", "5.2", 1024)], 1 << 30);
    let b = budgets(
        "raw_allocated = \"2GiB\"\npackages = 1\ninstalled = \"1MiB\"\ninitramfs = \"40MiB\"\n[outputs]\nqcow2 = \"400MiB\"\n",
    )
    .unwrap();
    assert_eq!(check_build(&b, &meta), vec![]);
    let f = figures(&b, &meta);
    assert!(
        f.contains(&"raw_allocated 1024.0 MiB of 2048.0 MiB".to_string()),
        "{f:?}"
    );
    assert!(f.contains(&"packages 1 of 1".to_string()), "{f:?}");
    assert_eq!(f.len(), 5, "{f:?}");
}

#[test]
fn package_count_and_output_budgets_fail() {
    let meta = fixture("1", "c", &[("a", "1", 1), ("b", "1", 2)], 1 << 20);
    let b = budgets("packages = 1\n[outputs]\nqcow2 = \"1MiB\"\n").unwrap();
    let rules: Vec<String> = check_build(&b, &meta).into_iter().map(|m| m.rule).collect();
    assert_eq!(rules, ["packages", "outputs.qcow2"]);
}

#[test]
fn a_one_second_boot_budget_fails_under_kvm_and_warns_under_tcg() {
    let b = budgets("boot_time_kvm = \"1s\"\nboot_time_tcg = \"1s\"\n").unwrap();
    let slow = vec!["12.1s containerd.service".to_string()];
    let kvm = check_boot(&b, true, 8.4, &slow).unwrap();
    assert!(!kvm.warning);
    assert_eq!(kvm.rule, "boot_time_kvm");
    assert!(kvm.to_string().contains("8.4s over 1s"), "{kvm}");
    assert!(
        kvm.to_string().contains("12.1s containerd.service"),
        "{kvm}"
    );
    let tcg = check_boot(&b, false, 80.0, &slow).unwrap();
    assert!(tcg.warning, "{tcg}");
    assert_eq!(check_boot(&b, true, 0.9, &slow), None);
    let none = budgets("").unwrap();
    assert_eq!(check_boot(&none, true, 1000.0, &slow), None);
}

#[test]
fn bad_budgets_are_named() {
    let e = budgets("boot_time_tcg = \"fast\"\n[outputs]\nvhd = \"1GiB\"\n").unwrap_err();
    assert_eq!(e[0].0, "budgets.boot_time_tcg");
    assert_eq!(e[1].0, "budgets.outputs.vhd");
    assert!(e[1].1.contains("qcow2"), "{e:?}");
    assert_eq!(
        budgets("boot_time_kvm = \"0s\"\n").unwrap_err()[0].0,
        "budgets.boot_time_kvm"
    );
}
