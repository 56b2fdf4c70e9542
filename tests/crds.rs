//! The committed CRD manifests in deploy/crds/ must be exactly what the code generates, and
//! every generated schema must be structural.

use std::collections::BTreeSet;
use std::path::Path;

use starling::crds;

const REGENERATE: &str = "regenerate with: cargo run -- crds --write deploy/crds";

#[test]
fn committed_manifests_match_the_generated_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
    let mut expected_files = BTreeSet::new();
    for crd in crds::all() {
        let file = crds::file_name(&crd);
        let generated = crds::to_yaml(&crd).unwrap();
        let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_else(|error| {
            panic!("deploy/crds/{file} is missing ({error}); {REGENERATE}")
        });
        assert!(
            committed == generated,
            "deploy/crds/{file} differs from the code's CRD; {REGENERATE}"
        );
        expected_files.insert(file);
    }
    let committed_files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("crd.projectcalico.org_"))
        .collect();
    let stale: Vec<_> = committed_files.difference(&expected_files).collect();
    assert!(
        stale.is_empty(),
        "deploy/crds has files the code no longer generates: {stale:?}"
    );
}

#[test]
fn every_crd_is_cluster_scoped_v1_and_structural() {
    let all = crds::all();
    let kinds: Vec<&str> = all.iter().map(|crd| crd.spec.names.kind.as_str()).collect();
    for kind in [
        "IPPool",
        "IPReservation",
        "BGPConfiguration",
        "BGPPeer",
        "FelixConfiguration",
        "IPAMBlock",
        "BlockAffinity",
        "IPAMHandle",
        "IPAMConfig",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    for crd in &all {
        let name = crd.metadata.name.clone().unwrap();
        assert_eq!(
            name,
            format!("{}.crd.projectcalico.org", crd.spec.names.plural)
        );
        assert_eq!(crd.spec.group, "crd.projectcalico.org");
        assert_eq!(crd.spec.scope, "Cluster", "{name}");
        assert_eq!(crd.spec.versions.len(), 1, "{name}");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1");
        assert!(version.served && version.storage, "{name}");
        let problems = crds::structural_problems(crd);
        assert!(
            problems.is_empty(),
            "{name} is not structural: {problems:#?}"
        );
        let root = version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap();
        assert!(root.required.is_none(), "{name}: spec must be optional");
    }
}

#[test]
fn structural_check_catches_bad_schemas() {
    let mut crd = crds::all().remove(0);
    let schema = crd.spec.versions[0]
        .schema
        .as_mut()
        .unwrap()
        .open_api_v3_schema
        .as_mut()
        .unwrap();
    let spec = schema.properties.as_mut().unwrap().get_mut("spec").unwrap();
    let field = spec
        .properties
        .as_mut()
        .unwrap()
        .values_mut()
        .next()
        .unwrap();
    field.type_ = None;
    field.any_of = Some(vec![Default::default()]);
    let problems = crds::structural_problems(&crd);
    assert_eq!(problems.len(), 2, "{problems:?}");
}

fn spec_property<'a>(
    all: &'a [serde_json::Value],
    plural: &str,
    path: &[&str],
) -> &'a serde_json::Value {
    let crd = all
        .iter()
        .find(|crd| crd["spec"]["names"]["plural"] == plural)
        .unwrap_or_else(|| panic!("no CRD {plural}"));
    let mut node = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    for step in path {
        node = &node["properties"][*step];
    }
    assert!(!node.is_null(), "{plural}: no property {path:?}");
    node
}

#[test]
fn printed_stream_holds_every_crd_with_calicos_field_names() {
    let stream = crds::all_yaml().unwrap();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stream).unwrap();
    assert_eq!(documents.len(), crds::all().len());
    assert_eq!(
        spec_property(&documents, "ippools", &["cidr"])["type"],
        "string"
    );
    assert_eq!(
        spec_property(&documents, "ippools", &["nat-outgoing"])["type"],
        "boolean"
    );
    assert_eq!(
        spec_property(&documents, "ippools", &["ipip", "mode"])["type"],
        "string"
    );
    assert_eq!(
        spec_property(&documents, "ippools", &["vxlanMode"])["enum"],
        serde_json::json!(["Never", "Always", "CrossSubnet"])
    );
    assert_eq!(
        spec_property(&documents, "ippools", &["disableBGPExport"])["type"],
        "boolean"
    );
    assert_eq!(
        spec_property(&documents, "ipreservations", &["reservedCIDRs"])["type"],
        "array"
    );
    assert_eq!(
        spec_property(&documents, "bgppeers", &["peerIP"])["type"],
        "string"
    );
    assert_eq!(
        spec_property(&documents, "bgppeers", &["asNumber"])["type"],
        "integer"
    );
    assert_eq!(
        spec_property(&documents, "bgppeers", &["localASNumber"])["type"],
        "integer"
    );
    assert_eq!(
        spec_property(&documents, "bgpconfigurations", &["serviceClusterIPs"])["items"]
            ["properties"]["cidr"]["type"],
        "string"
    );
    assert_eq!(
        spec_property(&documents, "felixconfigurations", &["vxlanVNI"])["type"],
        "integer"
    );
    assert_eq!(
        spec_property(&documents, "felixconfigurations", &[])
            ["x-kubernetes-preserve-unknown-fields"],
        true,
        "FelixConfiguration keeps the fields Starling does not model"
    );
}

/// BGPFilter rules carry Calico's whole field set per family, so that nothing a Calico user
/// writes is pruned: fields Starling does not implement must reach it to be refused.
#[test]
fn bgpfilter_rules_declare_calicos_fields_per_family() {
    let stream = crds::all_yaml().unwrap();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stream).unwrap();
    for (list, width, cidr_length) in [
        ("exportV4", 32, 18),
        ("importV4", 32, 18),
        ("exportV6", 128, 43),
        ("importV6", 128, 43),
    ] {
        let rule = &spec_property(&documents, "bgpfilters", &[list])["items"];
        let mut fields: Vec<&str> = rule["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "action",
                "asPathPrefix",
                "cidr",
                "communities",
                "interface",
                "matchOperator",
                "operations",
                "peerType",
                "prefixLength",
                "priority",
                "source"
            ],
            "{list}"
        );
        assert_eq!(rule["required"], serde_json::json!(["action"]), "{list}");
        assert!(rule["x-kubernetes-preserve-unknown-fields"].is_null());
        let properties = &rule["properties"];
        // Kubernetes' schema type holds bounds as floats.
        assert_eq!(
            properties["prefixLength"]["properties"]["max"]["maximum"].as_f64(),
            Some(width as f64)
        );
        assert_eq!(properties["cidr"]["maxLength"], cidr_length);
        assert_eq!(properties["interface"]["maxLength"], 15);
        assert_eq!(
            properties["matchOperator"]["enum"],
            serde_json::json!(["Equal", "NotEqual", "In", "NotIn"])
        );
    }
    // What the API server keeps, Starling refuses with the field's name.
    let spec = serde_json::from_value(serde_json::json!({
        "exportV4": [{"action": "Accept", "communities": {"values": ["65000:100"]}}]
    }))
    .unwrap();
    let error = starling_model::validate::bgpfilter::validate_bgp_filter("f", &spec).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("spec.exportV4[0].communities is not supported"),
        "{error}"
    );
}
