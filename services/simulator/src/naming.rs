//! Names of the demo data: tenant names, the two users of each tenant, device and site ids,
//! and the login table printed for people starting the demo. Ids are zero-padded so text order
//! equals numeric order.

use crate::args::DEFAULT_PASSWORD;

/// A demo user that can sign in, with the password of [`crate::SimulateArgs::password`] (unless the
/// user existed before with another one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoLogin {
    pub tenant_id: String,
    pub email: String,
    pub role: &'static str,
}

/// `prefix-NNNN`: `n` zero-padded to `min_width` digits, or to the digits of `count` if more.
pub(crate) fn numbered(prefix: &str, n: u32, count: u32, min_width: usize) -> String {
    let width = count.to_string().len().max(min_width);
    format!("{prefix}-{n:0width$}")
}

/// The id of device `n` (1-based) of `count`: `dev-0001`.
pub(crate) fn device_id(n: u32, count: u32) -> String {
    numbered("dev", n, count, 4)
}

/// The id of site `n` (1-based) of `count`: `site-01`.
pub(crate) fn site_id(n: u32, count: u32) -> String {
    numbered("site", n, count, 2)
}

/// The 1-based site of the device at 0-based `index`: round-robin over `sites`.
pub(crate) fn site_of(index: u32, sites: u32) -> u32 {
    index % sites.max(1) + 1
}

/// `acme` becomes "Acme Operations".
pub(crate) fn tenant_name(tenant_id: &str) -> String {
    let mut chars = tenant_id.chars();
    let capitalised: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{capitalised} Operations")
}

/// The two users of each tenant, admin first.
pub(crate) fn planned_logins(tenants: &[String]) -> Vec<DemoLogin> {
    tenants
        .iter()
        .flat_map(|tenant| {
            let domain = tenant.to_ascii_lowercase();
            [("admin", "customer_admin"), ("viewer", "customer_viewer")].map(|(user, role)| {
                DemoLogin {
                    tenant_id: tenant.clone(),
                    email: format!("{user}@{domain}.example"),
                    role,
                }
            })
        })
        .collect()
}

/// `(device_id, site_id)` of every device of one tenant, in order.
pub(crate) fn planned_devices(devices: u32, sites: u32) -> impl Iterator<Item = (String, String)> {
    (0..devices).map(move |i| (device_id(i + 1, devices), site_id(site_of(i, sites), sites)))
}

/// The logins as a small aligned table, for people starting the demo.
pub(crate) fn login_table(logins: &[DemoLogin], password: &str) -> String {
    let password = if password == DEFAULT_PASSWORD {
        format!("password {password:?}")
    } else {
        "password from PULSE_DEMO_PASSWORD".to_owned()
    };
    let tenant_w = column_width("TENANT", logins.iter().map(|l| l.tenant_id.len()));
    let email_w = column_width("EMAIL", logins.iter().map(|l| l.email.len()));
    let mut out = format!("Demo logins ({password}; users created earlier keep their password):\n");
    out.push_str(&format!(
        "  {:tenant_w$}  {:email_w$}  ROLE\n",
        "TENANT", "EMAIL"
    ));
    for l in logins {
        out.push_str(&format!(
            "  {:tenant_w$}  {:email_w$}  {}\n",
            l.tenant_id, l.email, l.role
        ));
    }
    out
}

/// The width of a table column: its widest cell, or its header if that is wider.
fn column_width(header: &str, cells: impl Iterator<Item = usize>) -> usize {
    cells.fold(header.len(), usize::max)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn names_are_valid_ids_and_zero_padded() {
        assert_eq!(device_id(1, 300), "dev-0001");
        assert_eq!(device_id(300, 300), "dev-0300");
        assert_eq!(device_id(9_999, 9_999), "dev-9999");
        assert_eq!(device_id(7, 10_000), "dev-00007");
        assert_eq!(device_id(100_000, 100_000), "dev-100000");
        assert_eq!(site_id(1, 6), "site-01");
        assert_eq!(site_id(6, 6), "site-06");
        assert_eq!(site_id(3, 1000), "site-0003");
        for (device, site) in planned_devices(1_000, 7) {
            pulse_proto::validate_id(&device).unwrap();
            pulse_proto::validate_id(&site).unwrap();
        }
        // Zero padding keeps text order equal to numeric order.
        let names: Vec<String> = planned_devices(12_000, 3).map(|(d, _)| d).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(tenant_name("acme"), "Acme Operations");
        assert_eq!(tenant_name("globex"), "Globex Operations");
        assert_eq!(tenant_name("x-1"), "X-1 Operations");
    }

    #[test]
    fn sites_are_round_robin() {
        let plan: Vec<(String, String)> = planned_devices(14, 6).collect();
        let sites: Vec<&str> = plan.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            sites,
            [
                "site-01", "site-02", "site-03", "site-04", "site-05", "site-06", "site-01",
                "site-02", "site-03", "site-04", "site-05", "site-06", "site-01", "site-02"
            ]
        );
        let mut per_site: HashMap<String, usize> = HashMap::new();
        for (_, site) in planned_devices(300, 7) {
            *per_site.entry(site).or_default() += 1;
        }
        assert_eq!(per_site.len(), 7);
        let (min, max) = (
            per_site.values().min().unwrap(),
            per_site.values().max().unwrap(),
        );
        assert!(max - min <= 1, "{per_site:?}");
        assert_eq!(site_of(5, 0), 1, "no division by zero");
    }

    #[test]
    fn logins_are_lower_case_with_both_roles() {
        let logins = planned_logins(&["acme".into(), "GloBex".into()]);
        let got: Vec<(&str, &str, &str)> = logins
            .iter()
            .map(|l| (l.tenant_id.as_str(), l.email.as_str(), l.role))
            .collect();
        assert_eq!(
            got,
            [
                ("acme", "admin@acme.example", "customer_admin"),
                ("acme", "viewer@acme.example", "customer_viewer"),
                ("GloBex", "admin@globex.example", "customer_admin"),
                ("GloBex", "viewer@globex.example", "customer_viewer"),
            ]
        );
        let table = login_table(&logins, "pulse-demo");
        assert!(table.contains("password \"pulse-demo\""), "{table}");
        assert!(
            table.contains("  acme    admin@acme.example     customer_admin\n"),
            "{table}"
        );
        let table = login_table(&logins, "s3cret");
        assert!(!table.contains("s3cret"), "{table}");
    }
}
