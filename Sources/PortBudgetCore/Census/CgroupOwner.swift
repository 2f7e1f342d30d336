/// Who a cgroup v2 path belongs to, read from the path alone: the systemd
/// unit, the container, the Kubernetes pod. The grammar covers the layouts
/// of systemd and of the cgroupfs driver for Docker, containerd, CRI-O and
/// Podman, and the kubelet's QoS slices:
///
///     /system.slice/nginx.service                                   unit
///     /system.slice/docker-<64 hex>.scope                           docker, systemd driver
///     /docker/<64 hex>                                              docker, cgroupfs driver
///     /kubepods.slice/kubepods-burstable.slice/
///       kubepods-burstable-pod<uid with _>.slice/cri-containerd-<64 hex>.scope
///     /kubepods/besteffort/pod<uid>/<64 hex>                        cgroupfs driver
///     /machine.slice/libpod-<64 hex>.scope                          podman
///
/// Nothing is looked up: a path that matches none of these still names its
/// unit or, failing that, itself.
public struct CgroupOwner: Sendable, Equatable, Hashable {
    /// The path below the cgroup v2 root, starting with "/"; "/" is the root.
    public var path: String
    /// The innermost `*.service`, `*.scope` or `*.slice` component.
    public var unit: String?
    /// A container's full id (64 hex digits).
    public var containerID: String?
    /// The Kubernetes pod's UID, with dashes.
    public var podUID: String?

    public init(path: String) {
        self.path = path
        let components = path.split(separator: "/")
        unit = components.last { Self.isUnit($0) }.map(String.init)
        for component in components {
            if let uid = Self.podUID(component) { podUID = uid }
            if let id = Self.containerID(component) { containerID = id }
        }
    }

    static func isUnit(_ name: Substring) -> Bool {
        name.hasSuffix(".service") || name.hasSuffix(".scope") || name.hasSuffix(".slice")
    }

    /// `pod<uid>` (cgroupfs) or `kubepods[-qos]-pod<uid with _>.slice` (systemd).
    static func podUID(_ component: Substring) -> String? {
        var name = component
        if name.hasSuffix(".slice") { name = name.dropLast(6) }
        let words = name.split(separator: "-", omittingEmptySubsequences: false)
        guard let start = words.lastIndex(where: { $0.hasPrefix("pod") }) else { return nil }
        let uid = String(words[start...].joined(separator: "-").dropFirst(3).map { $0 == "_" ? "-" : $0 })
        return isUUID(uid) ? uid.lowercased() : nil
    }

    /// `<64 hex>`, or a runtime's prefix and suffix around it:
    /// docker-, cri-containerd-, crio-, libpod-, containerd- … `.scope`.
    /// CRI-O's `crio-conmon-<id>.scope` is the monitor, not the container.
    static func containerID(_ component: Substring) -> String? {
        var name = component
        if name.hasSuffix(".scope") { name = name.dropLast(6) }
        if name.hasPrefix("crio-conmon-") { return nil }
        let id = name.split(separator: "-").last ?? name
        guard id.count == 64, id.allSatisfy({ $0.isHexDigit }) else { return nil }
        return id.lowercased()
    }

    static func isUUID(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        return parts.map(\.count) == [8, 4, 4, 4, 12] && parts.allSatisfy { $0.allSatisfy(\.isHexDigit) }
    }

    /// A name for a person at 3 a.m.: the container (short id, and its pod),
    /// else the unit, else the path.
    public var shortName: String {
        if let containerID {
            let container = "container " + containerID.prefix(12)
            return podUID.map { "pod \($0.prefix(8))… " + container } ?? container
        }
        if let podUID { return "pod \(podUID.prefix(8))…" }
        return unit ?? path
    }
}
