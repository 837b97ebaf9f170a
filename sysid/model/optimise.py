"""The exact rewrites between compiling and running a SymPy program: sign folding, dead-code
elimination, and the ordering of instructions into blocks of equal arity (see
:mod:`sysid.model.compiler` for why values and gradients stay unchanged).
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Callable

from .ops import _ADD, _DIV, _MUL, _NEG, _RSUB, _SUB, _is_slot


class Optimisation:
    """Sign folding and the final layout of the program (mixed into
    :class:`~sysid.model.compiler.CompiledExprs`)."""

    # ------------------------------------------------------------ sign folding
    def _fold_signs(self, outs: list) -> list:
        """Push each ``neg`` into the value it negates where that is cheaper; exact.

        ``-v`` is rewritten through the instruction that makes ``v`` when ``v`` is
        used by nothing else (that instruction then dies):

        * ``-(a - b) = b - a`` and ``-(-a) = a``: free;
        * ``-(a * b) = (-a) * b = a * (-b)``, likewise for ``a / b``, and
          ``-(a + b) = (-a) - b = (-b) - a``: as costly as negating the cheaper of
          ``a`` and ``b``, which is free for a constant and recursive otherwise.

        Each identity holds exactly in IEEE arithmetic (rounding commutes with
        negation; ``+`` and ``*`` commute), up to the sign of a zero result.  Costs
        compare (extra instructions, extra instructions on values that depend on a
        batch variable); a rewrite is taken only when it is strictly cheaper than
        a plain ``neg``, so programs that cannot gain stay as compiled.  The
        rewritten instructions take the place of the ``neg``; where a rewrite moves
        a use of a value shared with other users, that value's gradient is summed
        in another order (last-bit differences at most).
        """
        n, code, deps = self._n, self._code, self._deps
        if not any(fn is _NEG for _, fn, _ in code):
            return outs
        uses = Counter(a for _, _, args in code for a in args if _is_slot(a))
        uses.update(o for o in outs if _is_slot(o))
        batch = self._batch

        def batched(s: int) -> int:      # 1 if ``s`` may have the full batch shape
            return int(bool(deps[s] & batch) if batch is not None else bool(deps[s]))

        plans: dict = {}

        def plan(s, depth: int = 0):
            """(cost, how) of computing ``-s``; how: None (plain neg), 'unwrap',
            'swap' or the index of the argument to negate."""
            if not _is_slot(s):
                return (0, 0), None
            if s in plans:
                return plans[s]
            best = ((1, batched(s)), None)
            if s >= n and uses[s] == 1 and depth < 32:   # depth: bounded recursion
                _, fn, args = code[s - n]
                if fn is _NEG:
                    best = min(best, ((-1, -batched(s)), "unwrap"), key=_cost)
                elif fn is _SUB or fn is _RSUB:
                    best = min(best, ((0, 0), "swap"), key=_cost)
                elif fn is _MUL or fn is _DIV or fn is _ADD:
                    for i, a in enumerate(args):
                        best = min(best, (plan(a, depth + 1)[0], i), key=_cost)
            plans[s] = best
            return best

        new: dict = {}    # old slot -> operand in the rebuilt program

        def op(a):
            return new.get(a, a) if _is_slot(a) else a

        def negated(s):
            """Emit ``-s`` (s: an old operand) into the rebuilt program."""
            if not _is_slot(s):
                return -s
            how = plan(s)[1]
            if how is None:
                return self._emit("neg", _NEG, (op(s),))
            name, fn, args = code[s - n]
            if how == "unwrap":                               # -(-a) = a
                return op(args[0])
            if how == "swap":
                a, b = (op(x) for x in args)
                if fn is _RSUB:                               # -(b - a) = a - b
                    return self._emit("sub", _SUB, (a, b))
                return self._emit("sub", _SUB, (b, a))        # -(a - b) = b - a
            neg = negated(args[how])
            if fn is _ADD:                                    # -(a + b) = (-a) - b
                return self._emit("sub", _SUB, (neg, op(args[1 - how])))
            new_args = [op(a) for a in args]                  # -(a*b) = (-a)*b = a*(-b)
            new_args[how] = neg
            return self._emit(name, fn, tuple(new_args))

        self._code, self._deps = [], deps[:n]
        for k, (name, fn, args) in enumerate(code):
            if fn is _NEG and plan(args[0])[1] is not None:
                new[n + k] = negated(args[0])
            else:
                new[n + k] = self._emit(name, fn, tuple(op(a) for a in args))
        return [op(o) for o in outs]

    # ----------------------------------------------------------------- output
    def _assemble(self, outs: list) -> list:
        """Drop dead instructions, order the rest into blocks of equal arity and lay
        out the registers; returns the outputs' registers (constants stay numbers)."""
        n, code = self._n, self._code
        live = {o for o in outs if _is_slot(o)}
        for k in range(len(code) - 1, -1, -1):
            if n + k in live:
                live.update(a for a in code[k][2] if _is_slot(a))
        # Reordering must keep the order in which each value's users run: autograd
        # sums a value's gradient contributions in reverse creation order of its users,
        # so gradients stay bit-identical too.
        nodes, last_user = [], {}
        for k in range(len(code)):
            if n + k in live:
                slots = {a for a in code[k][2] if _is_slot(a)}
                nodes.append((k, [a - n for a in slots if a >= n]
                              + [last_user[a] for a in slots if a in last_user]))
                last_user.update((a, k) for a in slots)
        order = _schedule(nodes, lambda k: len(code[k][2]))
        consts = [a for k in order for a in code[k][2] if not _is_slot(a)]
        reg = {i: i for i in range(n)}
        next_const, next_reg = n, n + len(consts)
        blocks: list = []       # [arity, [(fn, register, ...), ...]]
        program, deps = [], self._deps[:n] + [frozenset()] * len(consts)
        for k in order:
            name, fn, args = code[k]
            regs = []
            for a in args:
                if _is_slot(a):
                    regs.append(reg[a])
                else:
                    regs.append(next_const)
                    next_const += 1
            reg[n + k] = next_reg
            next_reg += 1
            deps.append(self._deps[n + k])
            if not blocks or blocks[-1][0] != len(regs):
                blocks.append([len(regs), []])
            blocks[-1][1].append((fn, *regs))
            program.append((name, tuple(regs)))
        self._consts: tuple = tuple(consts)
        self._blocks = [(arity, tuple(block)) for arity, block in blocks]
        self._deps, self.program = deps, program
        del self._code
        return [reg[o] if _is_slot(o) else o for o in outs]


def _cost(option: tuple) -> tuple:
    return option[0]


def _schedule(nodes: list, arity: Callable) -> list:
    """A topological order of ``nodes`` that keeps equal arities together.

    ``nodes``: ``(key, keys that must come first)`` in a valid order, keys sortable
    by that order.  Greedy: keep taking the earliest ready node of the current arity;
    when none is ready, continue with the arity of the earliest ready node.
    O(N log N).
    """
    waiting = {k: len(set(pre)) for k, pre in nodes}
    users: dict = {}
    for k, pre in nodes:
        for p in set(pre):
            users.setdefault(p, []).append(k)
    ready: dict = {}                                   # arity -> heap of ready keys
    for k, count in waiting.items():
        if not count:
            heapq.heappush(ready.setdefault(arity(k), []), k)
    order, current = [], None
    while len(order) < len(nodes):
        if not ready.get(current):
            current = min((h[0], a) for a, h in ready.items() if h)[1]
        k = heapq.heappop(ready[current])
        order.append(k)
        for u in users.get(k, ()):
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready.setdefault(arity(u), []), u)
    return order
