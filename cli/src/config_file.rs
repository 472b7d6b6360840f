//! The configuration file of Microsoft's Event Hubs emulator (`Config.json`), read by
//! `hubcat emulator --config`. Its schema is Microsoft's `Config-schema.json`
//! (Azure/azure-event-hubs-emulator-installer, `EventHub-Emulator/Schema/`):
//!
//! ```json
//! {"UserConfig": {
//!     "NamespaceConfig": [{"Type": "EventHub", "Name": "emulatorNs1",
//!         "Entities": [{"Name": "eh1", "PartitionCount": "2",
//!                       "ConsumerGroups": [{"Name": "cg1"}]}]}],
//!     "LoggingConfig": {"Type": "File"}}}
//! ```
//!
//! A file Microsoft's emulator takes is taken here, with this emulator's wider limits
//! (up to 1,024 partitions, any number of hubs and groups). `PartitionCount` is a string
//! there; a number is taken too. `$Default` always exists and is not declared.
//! `LoggingConfig` is checked and otherwise ignored: this emulator logs to stderr. An
//! error names the field, by its path in the file, and what is allowed.

use eventhubs_emulator::HubConfig;
use serde_json::Value;

/// The most partitions a hub may have here (Microsoft's emulator: 32).
const MAX_PARTITIONS: u64 = 1024;

/// The hubs the file at `path` declares, or what is wrong with it (prefixed with the
/// flag and the path).
pub(crate) fn read(path: &std::path::Path) -> Result<Vec<HubConfig>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--config: cannot read {}: {e}", path.display()))?;
    hubs(&text).map_err(|e| format!("--config {}: {e}", path.display()))
}

/// The hubs `text` (a `Config.json`) declares, or what is wrong with it.
pub(crate) fn hubs(text: &str) -> Result<Vec<HubConfig>, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let user = field(&root, "", "UserConfig")?;
    let namespaces = array(user, "UserConfig", "NamespaceConfig")?;
    if namespaces.len() != 1 {
        return Err(format!(
            "UserConfig.NamespaceConfig: {} namespaces; exactly one is allowed",
            namespaces.len()
        ));
    }
    let at = "UserConfig.NamespaceConfig[0]";
    let namespace = &namespaces[0];
    let kind = string(field(namespace, at, "Type")?, &format!("{at}.Type"))?;
    if kind != "EventHub" {
        return Err(format!("{at}.Type: \"{kind}\"; allowed: \"EventHub\""));
    }
    let name = string(field(namespace, at, "Name")?, &format!("{at}.Name"))?;
    if !name.eq_ignore_ascii_case("emulatorNs1") {
        return Err(format!("{at}.Name: \"{name}\"; allowed: \"emulatorNs1\""));
    }
    if let Some(logging) = user.get("LoggingConfig") {
        let kind = string(
            field(logging, "UserConfig.LoggingConfig", "Type")?,
            "UserConfig.LoggingConfig.Type",
        )?;
        const KINDS: [&str; 4] = ["File", "Console", "File,Console", "Console,File"];
        if !KINDS.contains(&kind) {
            return Err(format!(
                "UserConfig.LoggingConfig.Type: \"{kind}\"; allowed: \"File\", \"Console\", \
                 \"File,Console\" or \"Console,File\""
            ));
        }
    }
    let entities = array(namespace, at, "Entities")?;
    if entities.is_empty() {
        return Err(format!("{at}.Entities: empty; at least one hub is needed"));
    }
    let mut hubs: Vec<HubConfig> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, entity) in entities.iter().enumerate() {
        let at = format!("{at}.Entities[{i}]");
        let name = string(field(entity, &at, "Name")?, &format!("{at}.Name"))?;
        if !valid_name(name) {
            return Err(format!(
                "{at}.Name: \"{name}\"; allowed: letters, digits, and '-', '_', '.' or '/' \
                 between them"
            ));
        }
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(format!("{at}.Name: \"{name}\" is declared twice"));
        }
        names.push(name);
        let partitions = partition_count(field(entity, &at, "PartitionCount")?, &at)?;
        let mut hub = HubConfig::new(name, partitions);
        if let Some(groups) = entity.get("ConsumerGroups") {
            let groups = groups
                .as_array()
                .ok_or_else(|| format!("{at}.ConsumerGroups: not an array"))?;
            let mut seen: Vec<&str> = Vec::new();
            for (j, group) in groups.iter().enumerate() {
                let at = format!("{at}.ConsumerGroups[{j}]");
                let group = string(field(group, &at, "Name")?, &format!("{at}.Name"))?;
                if group.eq_ignore_ascii_case("$default") {
                    return Err(format!(
                        "{at}.Name: \"{group}\"; '$Default' always exists and is not declared"
                    ));
                }
                if !valid_name(group) {
                    return Err(format!(
                        "{at}.Name: \"{group}\"; allowed: letters, digits, and '-', '_', '.' \
                         or '/' between them"
                    ));
                }
                if seen.iter().any(|g| g.eq_ignore_ascii_case(group)) {
                    return Err(format!("{at}.Name: \"{group}\" is declared twice"));
                }
                seen.push(group);
                hub = hub.consumer_group(group);
            }
        }
        hubs.push(hub);
    }
    Ok(hubs)
}

fn field<'a>(value: &'a Value, at: &str, name: &str) -> Result<&'a Value, String> {
    let path = if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    };
    match value {
        Value::Object(map) => map.get(name).ok_or_else(|| format!("{path}: missing")),
        _ => Err(format!(
            "{}: not an object",
            if at.is_empty() { "the file" } else { at }
        )),
    }
}

fn array<'a>(value: &'a Value, at: &str, name: &str) -> Result<&'a Vec<Value>, String> {
    field(value, at, name)?
        .as_array()
        .ok_or_else(|| format!("{at}.{name}: not an array"))
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{path}: {value}; allowed: a string"))
}

/// `PartitionCount`: a string in Microsoft's schema, taken as a number too.
fn partition_count(value: &Value, at: &str) -> Result<u32, String> {
    let allowed = format!(
        "allowed: 1 to {MAX_PARTITIONS}, as a string such as \"4\" (Microsoft's emulator \
         takes 1 to 32)"
    );
    let count = match value {
        Value::String(s) => s.trim().parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    match count {
        Some(n) if (1..=MAX_PARTITIONS).contains(&n) => Ok(n as u32),
        _ => Err(format!("{at}.PartitionCount: {value}; {allowed}")),
    }
}

/// Microsoft's pattern for hub and group names: `^[A-Za-z0-9]$` or
/// `^[A-Za-z0-9][\w-./]*[A-Za-z0-9]$`.
fn valid_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let inner = |c: char| alnum(c) || matches!(c, '_' | '-' | '.' | '/');
    let mut chars = name.chars();
    match (chars.next(), chars.next_back()) {
        (Some(first), None) => alnum(first),
        (Some(first), Some(last)) => alnum(first) && alnum(last) && chars.all(inner),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::hubs;

    /// Microsoft's default `Config.json` (Azure/azure-event-hubs-emulator-installer,
    /// `EventHub-Emulator/Config/Config.json`), as its installer ships it.
    const MICROSOFT_DEFAULT: &str = include_str!("../tests/data/microsoft-config.json");

    #[test]
    fn microsofts_default_file_declares_its_hub_and_group() {
        let hubs = hubs(MICROSOFT_DEFAULT).unwrap();
        assert_eq!(hubs.len(), 1);
        assert_eq!(hubs[0].name(), "eh1");
        assert_eq!(hubs[0].partitions(), 2);
        assert_eq!(hubs[0].consumer_groups(), ["cg1"]);
    }

    #[test]
    fn groups_may_be_left_out_and_a_count_may_be_a_number() {
        let text = r#"{"UserConfig": {"NamespaceConfig": [{"Type": "EventHub",
            "Name": "emulatorns1", "Entities": [{"Name": "orders.v2", "PartitionCount": 64},
            {"Name": "a", "PartitionCount": " 3 "}]}]}}"#;
        let hubs = hubs(text).unwrap();
        let got: Vec<(&str, u32, usize)> = hubs
            .iter()
            .map(|h| (h.name(), h.partitions(), h.consumer_groups().len()))
            .collect();
        assert_eq!(got, [("orders.v2", 64, 0), ("a", 3, 0)]);
    }

    #[test]
    fn an_invalid_file_is_refused_naming_the_field_and_what_is_allowed() {
        let entity = |e: &str| {
            format!(
                r#"{{"UserConfig": {{"NamespaceConfig": [{{"Type": "EventHub",
                "Name": "emulatorNs1", "Entities": [{e}]}}], "LoggingConfig": {{"Type": "File"}}}}}}"#
            )
        };
        let cases = [
            ("[]".to_owned(), "not an object"),
            (r#"{"UserConfig": {}}"#.to_owned(), "UserConfig.NamespaceConfig: missing"),
            (
                r#"{"UserConfig": {"NamespaceConfig": []}}"#.to_owned(),
                "exactly one is allowed",
            ),
            (
                r#"{"UserConfig": {"NamespaceConfig": [{"Type": "ServiceBus", "Name": "emulatorNs1", "Entities": []}]}}"#.to_owned(),
                "UserConfig.NamespaceConfig[0].Type: \"ServiceBus\"; allowed: \"EventHub\"",
            ),
            (
                r#"{"UserConfig": {"NamespaceConfig": [{"Type": "EventHub", "Name": "mine", "Entities": []}]}}"#.to_owned(),
                "UserConfig.NamespaceConfig[0].Name: \"mine\"; allowed: \"emulatorNs1\"",
            ),
            (
                r#"{"UserConfig": {"NamespaceConfig": [{"Type": "EventHub", "Name": "emulatorNs1", "Entities": []}], "LoggingConfig": {"Type": "Syslog"}}}"#.to_owned(),
                "UserConfig.LoggingConfig.Type: \"Syslog\"; allowed:",
            ),
            (entity(""), "Entities: empty"),
            (
                entity(r#"{"Name": "eh1"}"#),
                "UserConfig.NamespaceConfig[0].Entities[0].PartitionCount: missing",
            ),
            (
                entity(r#"{"Name": "eh1", "PartitionCount": "two"}"#),
                "Entities[0].PartitionCount: \"two\"; allowed: 1 to 1024",
            ),
            (
                entity(r#"{"Name": "eh1", "PartitionCount": "0"}"#),
                "Entities[0].PartitionCount: \"0\"; allowed: 1 to 1024",
            ),
            (
                entity(r#"{"Name": "-eh1", "PartitionCount": "2"}"#),
                "Entities[0].Name: \"-eh1\"; allowed: letters, digits",
            ),
            (
                entity(r#"{"Name": "eh1", "PartitionCount": "2"}, {"Name": "EH1", "PartitionCount": "2"}"#),
                "Entities[1].Name: \"EH1\" is declared twice",
            ),
            (
                entity(r#"{"Name": "eh1", "PartitionCount": "2", "ConsumerGroups": [{"Name": "$Default"}]}"#),
                "Entities[0].ConsumerGroups[0].Name: \"$Default\"; '$Default' always exists",
            ),
            (
                entity(r#"{"Name": "eh1", "PartitionCount": "2", "ConsumerGroups": [{"Nom": "cg1"}]}"#),
                "Entities[0].ConsumerGroups[0].Name: missing",
            ),
            (
                entity(r#"{"Name": 7, "PartitionCount": "2"}"#),
                "Entities[0].Name: 7; allowed: a string",
            ),
            ("{".to_owned(), "not JSON"),
        ];
        for (text, needle) in cases {
            let error = hubs(&text).expect_err(&text);
            assert!(
                error.contains(needle),
                "{text}\n-> {error}\nwanted: {needle}"
            );
        }
    }
}
