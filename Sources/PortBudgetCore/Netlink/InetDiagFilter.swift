/// A kernel-side socket filter for SOCK_DIAG dumps (INET_DIAG_REQ_BYTECODE),
/// so the kernel sends only the sockets the model needs. Compiles to the
/// kernel's jump bytecode the way ss(8) does: a program accepts a socket when
/// execution runs exactly to its end, and rejects it by jumping 4 bytes past.
public indirect enum InetDiagFilter: Sendable, Equatable {
    case sourcePortAtLeast(UInt16)
    case sourcePortAtMost(UInt16)
    /// The peer's port is at most this; `destinationPortAtMost(0)` picks
    /// sockets without a peer (listeners, bound-only).
    case destinationPortAtMost(UInt16)
    /// The kernel chose the local port (no SOCK_BINDPORT_LOCK). TIME_WAIT
    /// entries always match: diag sees no bind flags on them.
    case autoBound
    case not(InetDiagFilter)
    case and(InetDiagFilter, InetDiagFilter)
    case or(InetDiagFilter, InetDiagFilter)

    /// Local port within `low...high`.
    public static func sourcePorts(_ low: UInt16, _ high: UInt16) -> InetDiagFilter {
        .and(.sourcePortAtLeast(low), .sourcePortAtMost(high))
    }

    /// Op codes from linux/inet_diag.h.
    enum Code: UInt8 { case nop = 0, jmp = 1, sourceGE = 2, sourceLE = 3, destinationLE = 5, auto = 6 }

    struct Op {
        var code: UInt8
        var yes: UInt8
        var no: UInt16
        /// Absolute offset of this op in the program.
        var offset: Int
    }

    /// The program's bytes, in host byte order as the kernel reads them.
    public var bytecode: [UInt8] {
        var ops: [Op] = []
        emit(into: &ops)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ops.count * 4)
        for op in ops {
            bytes.append(op.code)
            bytes.append(op.yes)
            withUnsafeBytes(of: op.no) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    private func emit(into ops: inout [Op]) {
        let start = ops.last.map { $0.offset + 4 } ?? 0
        switch self {
        case let .sourcePortAtLeast(port), let .sourcePortAtMost(port), let .destinationPortAtMost(port):
            let code: Code
            switch self {
            case .sourcePortAtLeast: code = .sourceGE
            case .sourcePortAtMost: code = .sourceLE
            default: code = .destinationLE
            }
            // Two words: the comparison, then {0, 0, port}. False jumps past the end (8 + 4).
            ops.append(Op(code: code.rawValue, yes: 8, no: 12, offset: start))
            ops.append(Op(code: 0, yes: 0, no: port, offset: start + 4))
        case .autoBound:
            ops.append(Op(code: Code.auto.rawValue, yes: 4, no: 8, offset: start))
        case let .not(inner):
            // Inner true reaches this JMP, which always jumps 8: past the end, reject.
            // Inner false already lands on our end: accept.
            inner.emit(into: &ops)
            let at = ops.last!.offset + 4
            ops.append(Op(code: Code.jmp.rawValue, yes: 4, no: 8, offset: at))
        case let .and(first, second):
            let firstStart = ops.count
            first.emit(into: &ops)
            let firstEnd = ops.last!.offset + 4
            let secondStart = ops.count
            second.emit(into: &ops)
            let secondLength = ops.last!.offset + 4 - firstEnd
            // The first part's rejections pointed just past its own end; move them past ours.
            for i in firstStart..<secondStart where Op.isJump(ops, i) && ops[i].offset + Int(ops[i].no) == firstEnd + 4 {
                ops[i].no += UInt16(secondLength)
            }
        case let .or(first, second):
            // As ss(8) does: the first part's acceptance reaches a JMP over the
            // second part; its rejection already lands on the second part.
            first.emit(into: &ops)
            let jump = ops.count
            ops.append(Op(code: Code.jmp.rawValue, yes: 4, no: 0, offset: ops[jump - 1].offset + 4))
            let secondStart = ops[jump].offset + 4
            second.emit(into: &ops)
            ops[jump].no = UInt16(ops.last!.offset + 4 - secondStart + 4)
        }
    }
}

extension InetDiagFilter.Op {
    /// Data words after a port comparison hold a port, not a jump.
    static func isJump(_ ops: [InetDiagFilter.Op], _ i: Int) -> Bool {
        guard i > 0 else { return true }
        let previous = ops[i - 1].code
        let comparisons: Set<UInt8> = [InetDiagFilter.Code.sourceGE.rawValue, InetDiagFilter.Code.sourceLE.rawValue,
                                       InetDiagFilter.Code.destinationLE.rawValue]
        let isData = comparisons.contains(previous) && ops[i - 1].yes == 8 && ops[i].code == 0 && ops[i].yes == 0
        return !isData
    }
}

/// The kernel's interpreter and verifier for the subset of ops portbudget
/// emits (`inet_diag_bc_run`, `inet_diag_bc_audit`), so the compiler is
/// tested against the kernel's rules without a kernel.
public enum InetDiagBytecodeMachine {
    /// Runs `bytecode` for a socket; true when it is accepted.
    public static func accepts(_ bytecode: [UInt8], sourcePort: UInt16, destinationPort: UInt16 = 0,
                               autoBound: Bool) -> Bool {
        var pc = 0
        var len = bytecode.count
        while len > 0 {
            let code = bytecode[pc], yes = Int(bytecode[pc + 1])
            let no = Int(UInt16(bytecode[pc + 2]) | UInt16(bytecode[pc + 3]) << 8)
            var taken = true
            switch code {
            case 2, 3, 4, 5:
                let port = UInt16(bytecode[pc + 6]) | UInt16(bytecode[pc + 7]) << 8
                switch code {
                case 2: taken = sourcePort >= port
                case 3: taken = sourcePort <= port
                case 4: taken = destinationPort >= port
                default: taken = destinationPort <= port
                }
            case 6: taken = autoBound
            case 1: taken = false
            default: taken = true
            }
            let step = taken ? yes : no
            len -= step
            pc += step
        }
        return len == 0
    }

    /// True when the kernel would accept the program (the checks of `inet_diag_bc_audit`).
    public static func audit(_ bytecode: [UInt8]) -> Bool {
        guard bytecode.count % 4 == 0 else { return false }
        var boundaries: Set<Int> = []  // offsets reachable along the yes chain
        var pc = 0
        var len = bytecode.count
        while len > 0 {
            boundaries.insert(pc)
            guard pc + 4 <= bytecode.count else { return false }
            let code = bytecode[pc], yes = Int(bytecode[pc + 1])
            let no = Int(UInt16(bytecode[pc + 2]) | UInt16(bytecode[pc + 3]) << 8)
            var minLength = 4
            switch code {
            case 2, 3, 4, 5: minLength = 8; if len < 8 { return false }
            case 0, 1, 6: break
            default: return false
            }
            if code != 0 {
                if no < minLength || no > len + 4 || no & 3 != 0 { return false }
            }
            if yes < minLength || yes > len + 4 || yes & 3 != 0 { return false }
            pc += yes
            len -= yes
        }
        guard len == 0 else { return false }
        // Every in-program jump target must be an op boundary.
        pc = 0
        len = bytecode.count
        while len > 0 {
            let code = bytecode[pc], yes = Int(bytecode[pc + 1])
            let no = Int(UInt16(bytecode[pc + 2]) | UInt16(bytecode[pc + 3]) << 8)
            if code != 0 && no < len && !boundaries.contains(pc + no) { return false }
            pc += yes
            len -= yes
        }
        return true
    }
}
