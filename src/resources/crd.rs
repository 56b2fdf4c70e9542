//! The Kubernetes objects around Calico's wire specs: `metadata` + `spec` with `apiVersion` and
//! `kind`, the [`kube::Resource`] identity and the CustomResourceDefinition generated from the
//! spec's schema. The specs themselves are pure (`starling_model::wire`); this macro is what
//! kube-rs's `CustomResource` derive would generate for them, written once here because a
//! derive can only be attached where a type is defined.

/// `calico_resource!(IPPool, IPPoolSpec, "ippools", "doc")`: a cluster-scoped
/// `crd.projectcalico.org/v1` kind whose spec is `IPPoolSpec`.
macro_rules! calico_resource {
    ($kind:ident, $spec:ty, $plural:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
        pub struct $kind {
            #[serde(default)]
            #[schemars(skip)]
            pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            #[serde(default)]
            pub spec: $spec,
        }

        impl $kind {
            /// A new object with this name and spec.
            pub fn new(name: &str, spec: $spec) -> Self {
                $kind {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                    spec,
                }
            }
        }

        impl serde::Serialize for $kind {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let mut object = serializer.serialize_struct(stringify!($kind), 4)?;
                object.serialize_field("apiVersion", $crate::resources::crd::API_VERSION)?;
                object.serialize_field("kind", stringify!($kind))?;
                object.serialize_field("metadata", &self.metadata)?;
                object.serialize_field("spec", &self.spec)?;
                object.end()
            }
        }

        impl kube::Resource for $kind {
            type DynamicType = ();
            type Scope = kube::core::ClusterResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                stringify!($kind).into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                $crate::resources::crd::GROUP.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                $crate::resources::crd::VERSION.into()
            }
            fn api_version(_: &()) -> std::borrow::Cow<'_, str> {
                $crate::resources::crd::API_VERSION.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }

        impl kube::CustomResourceExt for $kind {
            fn crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
                $crate::resources::crd::definition::<$kind>(stringify!($kind), $plural)
            }
            fn crd_name() -> &'static str {
                concat!($plural, ".crd.projectcalico.org")
            }
            fn api_resource() -> kube::core::dynamic::ApiResource {
                kube::core::dynamic::ApiResource::erase::<Self>(&())
            }
            fn shortnames() -> &'static [&'static str] {
                &[]
            }
        }
    };
}

pub(crate) use calico_resource;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub const GROUP: &str = "crd.projectcalico.org";
pub const VERSION: &str = "v1";
pub const API_VERSION: &str = "crd.projectcalico.org/v1";

/// The CRD of a kind whose root type is `R`, with the schema settings kube-rs uses (OpenAPI 3,
/// inlined subschemas, structural rewriting).
pub fn definition<R: schemars::JsonSchema>(kind: &str, plural: &str) -> CustomResourceDefinition {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .into_generator();
    // A schema of our own types that does not fit JSONSchemaProps is a bug the CRD drift test
    // catches; an empty schema keeps `starling crds` from panicking meanwhile.
    let schema: Option<JSONSchemaProps> =
        serde_json::to_value(generator.into_root_schema_for::<R>())
            .and_then(serde_json::from_value)
            .ok();
    let singular = kind.to_ascii_lowercase();
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{plural}.{GROUP}")),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: GROUP.to_string(),
            names: CustomResourceDefinitionNames {
                kind: kind.to_string(),
                plural: plural.to_string(),
                singular: Some(singular),
                ..CustomResourceDefinitionNames::default()
            },
            scope: "Cluster".to_string(),
            versions: vec![CustomResourceDefinitionVersion {
                name: VERSION.to_string(),
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: schema,
                }),
                served: true,
                storage: true,
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}
