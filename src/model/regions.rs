//! The regions of the official HSS SDK and the public endpoints they imply.

/// Regions the official HSS SDK knows; other regions need an explicit endpoint.
pub const KNOWN_REGIONS: [&str; 32] = [
    "cn-north-9",
    "cn-north-1",
    "cn-north-4",
    "cn-southwest-2",
    "cn-east-2",
    "cn-east-3",
    "cn-east-4",
    "cn-south-1",
    "cn-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "na-mexico-1",
    "af-south-1",
    "sa-brazil-1",
    "la-south-2",
    "cn-south-4",
    "la-north-2",
    "tr-west-1",
    "cn-north-2",
    "ae-ad-1",
    "me-east-1",
    "cn-east-5",
    "my-kualalumpur-1",
    "eu-west-101",
    "ru-moscow-1",
    "cn-north-12",
    "cn-southwest-3",
    "cn-north-11",
    "af-north-1",
];

fn domain_for(region: &str) -> &'static str {
    if region == "eu-west-101" {
        "myhuaweicloud.eu"
    } else {
        "myhuaweicloud.com"
    }
}

/// The default HSS endpoint of a region.
pub fn default_endpoint(region: &str) -> String {
    format!("https://hss.{region}.{}", domain_for(region))
}

/// The default IAM endpoint of a region.
pub fn default_iam_endpoint(region: &str) -> String {
    format!("https://iam.{region}.{}", domain_for(region))
}

/// The HSS endpoint of a Huawei Cloud Stack (on-premise) region, whose domain is `cloud`:
/// `https://hss-api.{region}.{cloud}`, as the stack's own Terraform provider derives it.
pub fn stack_endpoint(region: &str, cloud: &str) -> String {
    format!("https://hss-api.{region}.{cloud}")
}

/// The IAM endpoint of a Huawei Cloud Stack whose domain is `cloud`:
/// `https://iam-apigateway-proxy.{cloud}/v3`.
pub fn stack_iam_endpoint(cloud: &str) -> String {
    format!("https://iam-apigateway-proxy.{cloud}/v3")
}

/// Where an ECS reaches its metadata service, and with it its agency's temporary keys.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// Whether `name` looks like a region ID: lower-case words joined by `-`, the last one a
/// number (`cn-north-4`, `my-kualalumpur-1`, `eu-west-101`).
pub fn is_region_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
}

/// The region of an IAM project name: the name itself for a region project (`cn-north-4`),
/// the part before `_` for a sub-project (`cn-north-4_dev`); `None` for other projects (such
/// as `MOS`, OBS's built-in project, or an empty name).
pub fn region_of_project_name(name: &str) -> Option<&str> {
    let region = name.split_once('_').map_or(name, |(r, _)| r);
    is_region_name(region).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_region_projects_from_others() {
        assert_eq!(region_of_project_name("cn-north-4"), Some("cn-north-4"));
        assert_eq!(region_of_project_name("cn-north-4_dev"), Some("cn-north-4"));
        assert_eq!(region_of_project_name("eu-west-101"), Some("eu-west-101"));
        assert_eq!(
            region_of_project_name("my-kualalumpur-1_x_y"),
            Some("my-kualalumpur-1")
        );
        for other in [
            "MOS",
            "",
            "_x",
            "cn-north",
            "CN-north-4",
            "cn-north-4a",
            "-1",
        ] {
            assert_eq!(region_of_project_name(other), None, "{other:?}");
        }
    }
}
