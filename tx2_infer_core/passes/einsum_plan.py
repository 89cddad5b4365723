"""Einsum as ops the CUDA backend lowers: a pure function from an equation and the operand
shapes to a list of steps (no graph, no arrays; ``rewrite_einsum.py`` turns it into nodes).

Each operand first loses its diagonals (a repeated letter: Transpose the two axes together,
Reshape them into one of n * n, Slice with step n + 1) and the letters only it has that the
result does not need (Transpose them last, ReduceSum). Two operands then meet::

    A ──Transpose──Reshape──▶ [batch.., M, K] ─┐
                                               MatMul ─▶ [batch.., M, N] ──Reshape──Transpose──▶
    B ──Transpose──Reshape──▶ [batch.., K, N] ─┘

when a letter is contracted (K) and each side keeps a free letter (M, N); batch letters stay
axes of their own up to two (the batched MatMul's), more are merged into one. Otherwise (an
outer, elementwise, dot or matrix-vector product) both operands are put in the result's letter
order with the contracted letters last and size-1 axes for the letters they lack, multiplied,
and the contracted letters summed (Mul + ReduceSum). One operand needs at most a Transpose and
a ReduceSum; nothing at all: an Identity. More operands are contracted left to right, each
intermediate keeping the letters still needed. Ellipses become spare letters (right-aligned,
as numpy broadcasts them); a size-1 axis against a larger one of the same letter is
broadcast, as numpy does. What the plan does not take raises ``EinsumRefused`` saying why.
"""
import math
import string
from dataclasses import dataclass
from typing import NamedTuple

from tx2_infer_core.cuda.params import MAX_DIMS

MAX_RANK = MAX_DIMS  # the CUDA copies' views have at most this many axes


class EinsumRefused(ValueError):
    """An equation (with these shapes) that ``einsum_plan`` does not take; the message says
    why."""


@dataclass(frozen=True)
class Step:
    """One op of a plan. ``inputs`` number tensors: the operands 0..n-1, then step i's result
    n + i; ``shape`` is its result's. ``args``: Transpose's perm, Slice's (axis, step, end)
    (start 0), ReduceSum's axes (keepdims 0); Reshape's target is ``shape``."""

    op: str
    inputs: tuple
    shape: tuple
    args: tuple = ()


class Operand(NamedTuple):
    """A tensor of the plan: its number, the letter of each axis, its shape."""

    ref: int
    letters: str
    shape: tuple


def _expand_ellipses(terms, out, ranks):
    """``terms`` and ``out`` with each '...' written as spare letters, right-aligned."""
    used = ''.join(terms) + (out or '')
    spare = [c for c in string.ascii_letters if c not in used]
    dims = [rank - len(t) + 3 if '...' in t else 0 for t, rank in zip(terms, ranks)]
    if min(dims, default=0) < 0 or max(dims, default=0) > len(spare):
        raise EinsumRefused('an ellipsis does not fit its operand')
    ellipsis = ''.join(spare[:max(dims, default=0)])
    terms = [t.replace('...', ellipsis[len(ellipsis) - d:]) for t, d in zip(terms, dims)]
    if out is None:
        letters = ''.join(terms)
        return terms, ellipsis + ''.join(sorted(c for c in set(letters)
                                                if letters.count(c) == 1 and c not in ellipsis))
    if '...' not in out and ellipsis:
        raise EinsumRefused('the output drops the ellipsis axes')
    return terms, out.replace('...', ellipsis)


def parse(equation, ranks) -> tuple:
    """(operand letters, output letters) of ``equation`` for operands of ``ranks``, ellipses
    expanded and an implicit output spelled out (numpy's: the letters seen once, sorted)."""
    eq = equation.replace(' ', '')
    lhs, arrow, rhs = eq.partition('->')
    terms = lhs.split(',')
    if len(terms) != len(ranks):
        raise EinsumRefused(f'{len(terms)} operand subscripts for {len(ranks)} inputs')
    for term in terms + [rhs]:
        if set(term.replace('...', '')) - set(string.ascii_letters):
            raise EinsumRefused(f"subscript '{term}': letters and one '...' only")
        if term.count('...') > 1:
            raise EinsumRefused(f"subscript '{term}': more than one '...'")
    terms, out = _expand_ellipses(terms, rhs if arrow else None, ranks)
    for term, rank in zip(terms, ranks):
        if len(term) != rank:
            raise EinsumRefused(f"subscript '{term}' for an operand of rank {rank}")
    if len(set(out)) != len(out) or set(out) - set(''.join(terms)):
        raise EinsumRefused(f"output '{out}': each letter once, and from an operand")
    return terms, out


def letter_sizes(terms, shapes) -> dict:
    """{letter: its size}: the largest of its axes; the others must be that size or 1."""
    seen = {}
    for term, shape in zip(terms, shapes):
        for c, n in zip(term, shape):
            seen.setdefault(c, set()).add(int(n))
    for c, found in seen.items():
        if len(found - {1}) > 1:
            raise EinsumRefused(f"letter '{c}' has sizes {sorted(found)}")
    return {c: max(found) for c, found in seen.items()}


def letter_groups(ka, kb, later, out) -> tuple:
    """(batch, m, n, k) of two operands' letters ``ka``, ``kb``: in both and kept (``later``),
    in ``ka`` only and kept, in ``kb`` only and kept, in both and summed. The kept ones in the
    order of ``out`` (None: of the operands), the summed ones in ``ka``'s."""
    def group(letters):
        return sorted(letters, key=out.index) if out is not None else list(letters)

    return (group(c for c in ka if c in kb and c in later),
            group(c for c in ka if c not in kb and c in later),
            group(c for c in kb if c not in ka and c in later),
            [c for c in ka if c in kb and c not in later])


def _only_unit_axes_move(perm, shape) -> bool:
    """True when ``perm`` keeps the order of every axis longer than 1 (a Reshape does it)."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


class _Plan:
    """The steps being written, one helper per kind of step."""

    def __init__(self, n_operands):
        self.n, self.steps = n_operands, []

    def add(self, op, inputs, shape, args=()) -> int:
        if len(shape) > MAX_RANK:
            raise EinsumRefused(f'a {op} of {len(shape)} axes (at most {MAX_RANK})')
        self.steps.append(Step(op, tuple(inputs), tuple(int(d) for d in shape), tuple(args)))
        return self.n + len(self.steps) - 1

    def transpose(self, t, perm) -> Operand:
        if list(perm) == list(range(len(perm))):
            return t
        shape = [t.shape[p] for p in perm]
        ref = self.add('Transpose', [t.ref], shape, perm)
        return Operand(ref, ''.join(t.letters[p] for p in perm), tuple(shape))

    def reshape(self, t, shape, letters) -> Operand:
        if tuple(shape) == tuple(t.shape):
            return Operand(t.ref, letters, t.shape)
        return Operand(self.add('Reshape', [t.ref], shape), letters, tuple(shape))

    def diagonals(self, t) -> Operand:
        """``t`` with every repeated letter's diagonal taken (Transpose, Reshape, Slice)."""
        while len(set(t.letters)) != len(t.letters):
            c = next(c for c in t.letters if t.letters.count(c) > 1)
            p = t.letters.index(c)
            q = t.letters.index(c, p + 1)
            n = t.shape[p]
            if t.shape[q] != n:
                raise EinsumRefused(f"letter '{c}' has sizes {n} and {t.shape[q]} in one operand")
            perm = [a for a in range(len(t.letters)) if a != q]
            perm.insert(p + 1, q)
            t = self.transpose(t, perm)
            merged = t.shape[:p] + (n * n,) + t.shape[p + 2:]
            t = self.reshape(t, merged, t.letters[:p + 1] + t.letters[p + 2:])
            shape = t.shape[:p] + (n,) + t.shape[p + 1:]
            t = Operand(self.add('Slice', [t.ref], shape, (p, n + 1, n * n)), t.letters, shape)
        return t

    def reduce(self, t, keep) -> Operand:
        """``t`` with its letters ``keep`` in that order, the others summed (Transpose them
        last, one ReduceSum)."""
        summed = [c for c in t.letters if c not in keep]
        t = self.transpose(t, [t.letters.index(c) for c in list(keep) + summed])
        if not summed:
            return t
        shape = t.shape[:len(keep)]
        axes = tuple(range(len(keep), len(t.letters)))
        return Operand(self.add('ReduceSum', [t.ref], shape, axes), ''.join(keep), shape)

    def arrange(self, t, order, shape, broadcast=False) -> Operand:
        """``t`` with its letters ``order`` in that order (its other axes, of size 1, dropped),
        reshaped to ``shape``; ``broadcast``: leading 1s may stay implicit (ONNX
        broadcasting)."""
        perm = [t.letters.index(c) for c in order]
        perm += [a for a in range(len(t.letters)) if a not in perm]
        if not _only_unit_axes_move(perm, t.shape):
            t = self.transpose(t, perm)
        shape = tuple(shape)
        lead = len(shape) - len(t.shape)
        if broadcast and lead >= 0 and shape[lead:] == t.shape and set(shape[:lead]) <= {1}:
            return t
        return self.reshape(t, shape, '')

    def pair(self, a, b, later, out=None) -> Operand:
        """The contraction of ``a`` and ``b`` keeping the letters in ``later``, in the order
        ``out`` (None: batch, then a's free letters, then b's)."""
        size = {c: max(n for t in (a, b) for d, n in zip(t.letters, t.shape) if d == c)
                for c in set(a.letters + b.letters)}
        ka = [c for c, n in zip(a.letters, a.shape) if n == size[c]]  # not broadcast
        kb = [c for c, n in zip(b.letters, b.shape) if n == size[c]]
        a = self.reduce(a, [c for c in a.letters if c in kb or c in later or c not in ka])
        b = self.reduce(b, [c for c in b.letters if c in ka or c in later or c not in kb])
        ka, kb = [c for c in ka if c in a.letters], [c for c in kb if c in b.letters]
        batch, m, n, k = letter_groups(ka, kb, later, out)
        res = list(out) if out is not None else batch + m + n
        if not (k and m and n):
            return self.product(a, b, ka, kb, res, k, size)
        dims = [size[c] for c in batch]
        dims = dims if len(dims) <= 2 else [math.prod(dims)]
        big = [math.prod(size[c] for c in g) for g in (m, k, n)]
        a = self.arrange(a, batch + m + k, dims + big[:2])
        b = self.arrange(b, batch + k + n, dims + big[1:])
        shape = tuple(dims + [big[0], big[2]])
        y = Operand(self.add('MatMul', [a.ref, b.ref], shape), '', shape)
        y = self.reshape(y, [size[c] for c in batch + m + n], ''.join(batch + m + n))
        return self.transpose(y, [y.letters.index(c) for c in res])

    def product(self, a, b, ka, kb, res, k, size) -> Operand:
        """Mul in the letter order ``res`` + ``k`` (size-1 axes for missing letters), then a
        ReduceSum of the trailing ``k``."""
        joint = res + k
        full_a, full_b = ([size[c] if c in kept else 1 for c in joint] for kept in (ka, kb))
        a = self.arrange(a, [c for c in joint if c in ka], full_a, broadcast=True)
        b = self.arrange(b, [c for c in joint if c in kb], full_b, broadcast=True)
        if max(len(a.shape), len(b.shape)) < len(joint):  # one must give the product's rank
            a = self.reshape(a, full_a, '')
        shape = tuple(size[c] for c in joint)
        y = Operand(self.add('Mul', [a.ref, b.ref], shape), ''.join(joint), shape)
        return self.reduce(y, res)


def einsum_plan(equation, shapes) -> list:
    """The steps (``Step``) computing ``numpy.einsum(equation, *operands)`` for operands of
    ``shapes``; the last step's result is the output. Raises ``EinsumRefused``."""
    shapes = [tuple(int(d) for d in s) for s in shapes]
    terms, out = parse(equation, [len(s) for s in shapes])
    letter_sizes(terms, shapes)
    if max((len(s) for s in shapes), default=0) > MAX_RANK:
        raise EinsumRefused(f'an operand of more than {MAX_RANK} axes')
    plan = _Plan(len(shapes))
    ops = [plan.diagonals(Operand(i, t, s)) for i, (t, s) in enumerate(zip(terms, shapes))]
    result = plan.reduce(ops[0], list(out)) if len(ops) == 1 else ops[0]
    for j in range(1, len(ops)):
        later = set(out).union(*(t.letters for t in ops[j + 1:]))
        result = plan.pair(result, ops[j], later, out if j == len(ops) - 1 else None)
    if not plan.steps:
        plan.add('Identity', [result.ref], result.shape)
    return plan.steps
