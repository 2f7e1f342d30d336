/// `/proc/PID/mountinfo` (proc(5)): one mount a line,
/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER`.
public enum MountInfo {
    /// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on a
    /// unified host, `/sys/fs/cgroup/unified` on a hybrid one; nil on a
    /// v1-only host. A mount of the hierarchy's root ("/") wins over a
    /// mount of a subtree (a container's view).
    public static func cgroup2MountPoint(_ text: String) -> String? {
        var subtree: String? = nil
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 1 < fields.count,
                  fields[dash + 1] == "cgroup2" else { continue }
            let mountPoint = unescape(fields[4])
            if fields[3] == "/" { return mountPoint }
            subtree = subtree ?? mountPoint
        }
        return subtree
    }

    /// Mount points escape space, tab, newline and backslash as \\ooo octal.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
               let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
