import CMalloc
import Logging
import PortBudgetCore

/// Gives the heap's free pages back to the kernel after a collection, and
/// exports what the heap holds. glibc's malloc returns memory by itself only
/// from the top of each arena, so once a tenant's namespaces are gone, what
/// the agent held for them (alert instances, trends, the collection's
/// records, spread over the workers' arenas) is free but stays resident.
/// `malloc_trim(0)` hands every whole free page back (madvise), in every
/// arena; it runs only when malloc holds at least `freeBytesThreshold` free,
/// after the other observers (the evaluator forgets first).
public struct HeapReleaser: CollectionObserver {
    /// Free heap bytes from which the pages are given back: below it the
    /// walk over malloc's free lists is not worth its time. Half the 8 MB
    /// the flood benchmark lets a tenant leave behind (docs/benchmarks.md):
    /// at 16 MiB, a flood measured in turn left 15.6 MB free and resident.
    public static let freeBytesThreshold = 4 << 20

    /// At most this many malloc arenas. glibc gives each new thread an arena
    /// of its own up to 8 per core; the collection workers, NIO's and Swift's
    /// threads then each keep free pages of their own that trimming cannot
    /// join up. Measured on the 1,500-namespace flood: anonymous RSS 60 s
    /// after the tenant left +3.4 MB over its baseline, against +11.2 MB
    /// with glibc's defaults.
    public static let arenas: Int32 = 2
    /// Allocations from this size up get pages of their own, given back the
    /// moment they are freed (a collection's record buffers, the evaluator's
    /// tables). glibc's default threshold starts at 128 KiB but rises to the
    /// largest block freed, after which such blocks stay in the heap.
    public static let ownPagesFrom: Int32 = 128 << 10

    /// Sets `arenas` and `ownPagesFrom`; call first thing, before threads start.
    public static func configureAllocator() {
        _ = mallopt(M_ARENA_MAX, arenas)
        _ = mallopt(M_MMAP_THRESHOLD, ownPagesFrom)
    }

    let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Bytes the heap holds: in use (allocated, mmapped ones included) and
    /// free (kept by malloc for reuse, whether or not its pages were given back).
    public static func usage() -> (inUse: Int, free: Int) {
        let info = mallinfo2()
        return (Int(info.uordblks + info.hblkhd), Int(info.fordblks))
    }

    public func collected(_ collection: CollectionResult, writer: inout ExpositionWriter) async {
        var after = Self.usage()
        if after.free >= Self.freeBytesThreshold {
            let released = malloc_trim(0) != 0
            logger.debug("heap trimmed", metadata: ["free_bytes": "\(after.free)", "released": "\(released)"])
            after = Self.usage()
        }
        writer.family("portbudget_heap_bytes", .gauge,
                      help: "Bytes of the agent's C heap (glibc malloc) after the collection: in use, and free (kept for reuse; its whole pages are given back to the kernel once \(Self.freeBytesThreshold >> 20) MiB or more are free).",
                      [.init([("state", "in_use")], Double(after.inUse)), .init([("state", "free")], Double(after.free))])
    }
}
