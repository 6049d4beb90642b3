//! The kinds of cluster objects Tollgate reads, their identities and a
//! typed value that holds any of them. Sources produce [`Object`]s; the
//! store ([`super::Snapshot`]) keeps them by [`ObjectRef`].
use std::fmt;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{NetworkPolicy, ServiceCIDR};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::istio;
use super::osm;

/// The kinds of objects Tollgate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    Gateway,
    NetworkPolicy,
    ServiceEntry,
    Sidecar,
    MeshConfig,
    Egress,
    /// Read only for `spec.podCIDRs` (the cluster ranges, when no
    /// `--cluster-cidr` is given).
    Node,
    /// `networking.k8s.io/v1` `ServiceCIDR`: the Service ranges.
    ServiceCidr,
}

impl ObjectKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ObjectKind; 12] = [
        ObjectKind::Namespace,
        ObjectKind::Pod,
        ObjectKind::Service,
        ObjectKind::EndpointSlice,
        ObjectKind::Gateway,
        ObjectKind::NetworkPolicy,
        ObjectKind::ServiceEntry,
        ObjectKind::Sidecar,
        ObjectKind::MeshConfig,
        ObjectKind::Egress,
        ObjectKind::Node,
        ObjectKind::ServiceCidr,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Namespace => "Namespace",
            ObjectKind::Pod => "Pod",
            ObjectKind::Service => "Service",
            ObjectKind::EndpointSlice => "EndpointSlice",
            ObjectKind::Gateway => "Gateway",
            ObjectKind::NetworkPolicy => "NetworkPolicy",
            ObjectKind::ServiceEntry => "ServiceEntry",
            ObjectKind::Sidecar => "Sidecar",
            ObjectKind::MeshConfig => "MeshConfig",
            ObjectKind::Egress => "Egress",
            ObjectKind::Node => "Node",
            ObjectKind::ServiceCidr => "ServiceCIDR",
        }
    }

    /// The kind named `text` (as `as_str` spells it).
    pub fn parse(text: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub fn is_namespaced(self) -> bool {
        !matches!(self, ObjectKind::Namespace | ObjectKind::Node | ObjectKind::ServiceCidr)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an object: kind, namespace (for namespaced kinds) and name.
/// Displays as `Pod test-egress/sleep` or `Namespace shop`, the form
/// diagnostics use.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: ObjectKind, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// The reference of an object from its kind and metadata (names may be
    /// missing: they display as `(unnamed)`).
    pub fn from_meta(kind: ObjectKind, meta: &ObjectMeta) -> Self {
        Self {
            kind,
            namespace: if kind.is_namespaced() {
                meta.namespace.clone()
            } else {
                None
            },
            name: meta.name.clone().unwrap_or_else(|| "(unnamed)".to_owned()),
        }
    }

    /// `namespace/name` (or `name` for cluster-scoped objects).
    pub fn qualified(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Parses the display form (`Pod test-egress/sleep`, `Namespace shop`),
    /// as diagnostics name objects.
    pub fn parse(text: &str) -> Option<ObjectRef> {
        let (kind, rest) = text.split_once(' ')?;
        let kind = ObjectKind::parse(kind)?;
        if kind.is_namespaced() {
            let (ns, name) = rest.split_once('/')?;
            Some(ObjectRef::new(kind, Some(ns), name))
        } else {
            Some(ObjectRef::new(kind, None, rest))
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind.as_str(), ns, self.name),
            None => write!(f, "{} {}", self.kind.as_str(), self.name),
        }
    }
}

/// One typed object of a kind Tollgate reads (boxed: the types are large
/// and of very different sizes). `From` builds one from the plain type.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Box<Namespace>),
    Pod(Box<Pod>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Gateway(Box<istio::Gateway>),
    NetworkPolicy(Box<NetworkPolicy>),
    ServiceEntry(Box<istio::ServiceEntry>),
    Sidecar(Box<istio::Sidecar>),
    MeshConfig(Box<osm::MeshConfig>),
    Egress(Box<osm::Egress>),
    Node(Box<Node>),
    ServiceCidr(Box<ServiceCIDR>),
}

macro_rules! object_from {
    ($($variant:ident: $ty:ty),*) => {$(
        impl From<$ty> for Object {
            fn from(object: $ty) -> Self {
                Object::$variant(Box::new(object))
            }
        }
    )*};
}

/// Calls `$m!` with every `Variant: Type` pair of [`Object`], so that the
/// list is written once.
macro_rules! for_each_kind {
    ($m:ident) => {
        $m!(
            Namespace: Namespace,
            Pod: Pod,
            Service: Service,
            EndpointSlice: EndpointSlice,
            Gateway: istio::Gateway,
            NetworkPolicy: NetworkPolicy,
            ServiceEntry: istio::ServiceEntry,
            Sidecar: istio::Sidecar,
            MeshConfig: osm::MeshConfig,
            Egress: osm::Egress,
            Node: Node,
            ServiceCidr: ServiceCIDR
        );
    };
}
pub(crate) use for_each_kind;

for_each_kind!(object_from);

/// Applies `$body` to the metadata of whichever object `$self` holds.
macro_rules! with_meta {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            Object::Namespace($o) => $body,
            Object::Pod($o) => $body,
            Object::Service($o) => $body,
            Object::EndpointSlice($o) => $body,
            Object::Gateway($o) => $body,
            Object::NetworkPolicy($o) => $body,
            Object::ServiceEntry($o) => $body,
            Object::Sidecar($o) => $body,
            Object::MeshConfig($o) => $body,
            Object::Egress($o) => $body,
            Object::Node($o) => $body,
            Object::ServiceCidr($o) => $body,
        }
    };
}

impl Object {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Namespace(_) => ObjectKind::Namespace,
            Object::Pod(_) => ObjectKind::Pod,
            Object::Service(_) => ObjectKind::Service,
            Object::EndpointSlice(_) => ObjectKind::EndpointSlice,
            Object::Gateway(_) => ObjectKind::Gateway,
            Object::NetworkPolicy(_) => ObjectKind::NetworkPolicy,
            Object::ServiceEntry(_) => ObjectKind::ServiceEntry,
            Object::Sidecar(_) => ObjectKind::Sidecar,
            Object::MeshConfig(_) => ObjectKind::MeshConfig,
            Object::Egress(_) => ObjectKind::Egress,
            Object::Node(_) => ObjectKind::Node,
            Object::ServiceCidr(_) => ObjectKind::ServiceCidr,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        with_meta!(self, o => &o.metadata)
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        with_meta!(self, o => &mut o.metadata)
    }

    /// The object's reference (namespaced objects without a namespace are
    /// in `default`, as kubectl puts them).
    pub fn object_ref(&self) -> ObjectRef {
        let kind = self.kind();
        let meta = self.meta();
        ObjectRef {
            kind,
            namespace: kind.is_namespaced().then(|| {
                meta.namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".to_owned())
            }),
            name: meta.name.clone().unwrap_or_else(|| "(unnamed)".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_display_and_parse_back() {
        for r in [
            ObjectRef::new(ObjectKind::Pod, Some("test-egress"), "sleep"),
            ObjectRef::new(ObjectKind::Namespace, None, "shop"),
            ObjectRef::new(ObjectKind::ServiceCidr, None, "kubernetes"),
        ] {
            assert_eq!(ObjectRef::parse(&r.to_string()), Some(r));
        }
        assert_eq!(ObjectRef::parse("agent configuration"), None);
        assert_eq!(ObjectRef::parse("Pod no-slash"), None);
    }

    #[test]
    fn object_ref_defaults_the_namespace() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        let o = Object::from(pod);
        assert_eq!(o.object_ref(), ObjectRef::new(ObjectKind::Pod, Some("default"), "p"));
    }
}
