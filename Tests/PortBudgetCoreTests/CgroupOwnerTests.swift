import XCTest
@testable import PortBudgetCore

/// The cgroup path grammar: who a path belongs to, for each runtime and driver.
final class CgroupOwnerTests: XCTestCase {
    let hex = "3f4a9c1d2b7e8f6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e"
    let uid = "0d1c2b3a-4f5e-4d7c-8b9a-0f1e2d3c4b5a"
    var uidUnderscored: String { uid.replacingOccurrences(of: "-", with: "_") }

    func owner(_ path: String) -> (String?, String?, String?) {
        let o = CgroupOwner(path: path)
        return (o.unit, o.containerID, o.podUID)
    }

    func testSystemdUnitsNestedAndPlain() {
        XCTAssert(owner("/system.slice/nginx.service") == ("nginx.service", nil, nil))
        XCTAssert(owner("/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope")
            == ("app-firefox-1234.scope", nil, nil))
        // A process in a sub-cgroup of a service still belongs to the service.
        XCTAssert(owner("/system.slice/haproxy.service/worker") == ("haproxy.service", nil, nil))
        XCTAssert(owner("/") == (nil, nil, nil))
        XCTAssertEqual(CgroupOwner(path: "/").shortName, "/")
        XCTAssertEqual(CgroupOwner(path: "/system.slice/nginx.service").shortName, "nginx.service")
    }

    func testDockerBothDrivers() {
        XCTAssert(owner("/system.slice/docker-\(hex).scope") == ("docker-\(hex).scope", hex, nil))
        XCTAssert(owner("/docker/\(hex)") == (nil, hex, nil))
        XCTAssertEqual(CgroupOwner(path: "/docker/\(hex)").shortName, "container 3f4a9c1d2b7e")
        XCTAssert(owner("/machine.slice/libpod-\(hex).scope") == ("libpod-\(hex).scope", hex, nil))
    }

    func testKubernetesQoSClassesWithContainerdAndCRIO() {
        XCTAssert(owner("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uidUnderscored).slice/cri-containerd-\(hex).scope")
            == ("cri-containerd-\(hex).scope", hex, uid))
        XCTAssert(owner("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uidUnderscored).slice/crio-\(hex).scope")
            == ("crio-\(hex).scope", hex, uid))
        // Guaranteed pods sit directly under kubepods.slice.
        XCTAssert(owner("/kubepods.slice/kubepods-pod\(uidUnderscored).slice/cri-containerd-\(hex).scope")
            == ("cri-containerd-\(hex).scope", hex, uid))
        // cgroupfs driver: dashes kept, the container a bare id.
        XCTAssert(owner("/kubepods/burstable/pod\(uid)/\(hex)") == (nil, hex, uid))
        XCTAssert(owner("/kubepods/pod\(uid)/\(hex)") == (nil, hex, uid))
        // The pod's own cgroup (its pause container's parent) has no container.
        XCTAssert(owner("/kubepods/besteffort/pod\(uid)") == (nil, nil, uid))
        XCTAssertEqual(CgroupOwner(path: "/kubepods/pod\(uid)/\(hex)").shortName, "pod 0d1c2b3a… container 3f4a9c1d2b7e")
    }

    func testLookalikesAreNotContainersOrPods() {
        // CRI-O's monitor process, a short id, a non-hex id, a "pod" that is not a UUID.
        XCTAssert(owner("/system.slice/crio-conmon-\(hex).scope") == ("crio-conmon-\(hex).scope", nil, nil))
        XCTAssert(owner("/docker/3f4a9c1d2b7e") == (nil, nil, nil))
        XCTAssert(owner("/docker/" + String(repeating: "z", count: 64)) == (nil, nil, nil))
        XCTAssert(owner("/system.slice/podman.service") == ("podman.service", nil, nil))
        XCTAssert(owner("/kubepods.slice/kubepods-podnotauid.slice") == ("kubepods-podnotauid.slice", nil, nil))
    }
}
