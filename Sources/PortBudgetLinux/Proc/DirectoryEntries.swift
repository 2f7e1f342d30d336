import Glibc

/// The entries of a directory, read with readdir(3). A `dirent` the kernel
/// returns is only `d_reclen` bytes long, not `MemoryLayout<dirent>.size`:
/// copying `entry.pointee` (or its 256-byte `d_name`) can read past the end
/// of libc's buffer and fault when that ends a page. So the name is read in
/// place, up to its NUL.
enum DirectoryEntries {
    struct Entry {
        var name: String
        /// `DT_DIR`, `DT_LNK`, …; `DT_UNKNOWN` where the file system does not say.
        var type: UInt8
    }

    private static let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
    private static let typeOffset = MemoryLayout<dirent>.offset(of: \dirent.d_type)!

    /// Every entry but "." and "..", in readdir order; nil, with errno set,
    /// when the directory cannot be opened (gone, or not ours to read).
    static func list(_ path: String) -> [Entry]? {
        guard let directory = opendir(path) else { return nil }
        defer { closedir(directory) }
        var out: [Entry] = []
        while let entry = readdir(directory) {
            let raw = UnsafeRawPointer(entry)
            let name = String(cString: raw.advanced(by: nameOffset).assumingMemoryBound(to: CChar.self))
            if name == "." || name == ".." { continue }
            out.append(Entry(name: name, type: raw.load(fromByteOffset: typeOffset, as: UInt8.self)))
        }
        return out
    }
}
