"""The HLO counters behind `make bench`'s copy and memory-traffic tables
(bench/bench_copies.py), on a hand-written module whose counts are known."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))

import bench_copies  # noqa: E402

# Entry: a loop reading two full arrays and a scalar (3 arrays moved), a
# copy (2), a sum over two full arrays into a scalar (2), a scalar loop
# (0), and a conditional whose larger branch runs one loop over a full
# array (2) and whose other branch does nothing.
MODULE = """HloModule jit_update

%fused_computation (param_0: f32[8], param_1: f32[8]) -> f32[8] {
  %param_0 = f32[8]{0} parameter(0)
  %param_1 = f32[8]{0} parameter(1)
  ROOT %add = f32[8]{0} add(%param_0, %param_1)
}

%region_0.6 (arg_empty_tuple.1: ()) -> (f32[]) {
  %constant.1 = f32[] constant(0)
  ROOT %tuple.1 = (f32[]) tuple(%constant.1)
}

%region_1.9 (arg_tuple.1: (f32[], f32[8])) -> (f32[]) {
  %arg_tuple.1 = (f32[], f32[8]{0}) parameter(0)
  %get-tuple-element.8 = f32[8]{0} get-tuple-element(%arg_tuple.1), index=1
  %negate_fusion = f32[8]{0} fusion(%get-tuple-element.8), kind=kLoop, calls=%fused_computation
  %sum_fusion = f32[] fusion(%negate_fusion), kind=kLoop, calls=%fused_computation
  ROOT %tuple.2 = (f32[]) tuple(%sum_fusion)
}

ENTRY %main.2 (p0: f32[8], p1: f32[8], s: f32[]) -> (f32[8], f32[8]) {
  %p0 = f32[8]{0} parameter(0), metadata={op_name="p0"}
  %p1 = f32[8]{0} parameter(1)
  %s = f32[] parameter(2)
  %copy.7 = f32[8]{0} copy(%p0)
  %add_fusion = f32[8]{0} fusion(%copy.7, %p1, %s), kind=kLoop, calls=%fused_computation
  %sum_fusion = f32[] fusion(%add_fusion, %p1), kind=kLoop, calls=%fused_computation
  %scalar_fusion = f32[] fusion(%s, %sum_fusion), kind=kLoop, calls=%fused_computation
  %predicate = s32[] fusion(%s), kind=kLoop, calls=%fused_computation
  %empty = () tuple()
  %branch_input = (f32[], f32[8]{0}) tuple(%s, %add_fusion)
  %cond.7 = (f32[]) conditional(%predicate, %empty, %branch_input), branch_computations={%region_0.6, %region_1.9}
  ROOT %tuple.4 = (f32[8]{0}, f32[8]{0}) tuple(%add_fusion, %copy.7)
}
"""


def test_copies_are_counted_in_the_entry_only():
    assert bench_copies.count_full_copies(MODULE, 8) == 1
    # Arrays of another size are not full-size copies.
    assert bench_copies.count_full_copies(MODULE, 9) == 0


def test_traffic_counts_each_loops_full_operands_and_results():
    # copy 1 + 1, add_fusion 2 + 1, sum_fusion 2 + 0, scalar loops 0; the
    # conditional's larger branch: negate 1 + 1, its sum 1.
    assert bench_copies.count_full_traffic(MODULE, 8) == (7, 10)
    assert bench_copies.count_full_traffic(MODULE, 9) == (0, 0)


def test_a_conditionals_branches_are_read_in_both_forms():
    assert bench_copies._branches("branch_computations={%region_0.6, %region_1.9}, metadata={}") == [
        "region_0.6", "region_1.9",
    ]
    assert bench_copies._branches(
        "true_computation=%on_true.2, false_computation=%on_false.3, metadata={op_name=\"x\"}"
    ) == ["on_true.2", "on_false.3"]


# A loop that reads one full array and only the first element of another
# (an ordering term such as `one_after(m.flatten()[0])`), and a loop that
# reads the same array both through a slice and whole.
SLICED = """HloModule jit_update

%sliced_computation (param_0: f32[8], param_1: f32[8]) -> f32[8] {
  %param_0 = f32[8]{0} parameter(0)
  %param_1 = f32[8]{0} parameter(1)
  %slice.1 = f32[1]{0} slice(%param_1), slice={[0:1]}
  %bitcast.1 = f32[] bitcast(%slice.1)
  %broadcast.1 = f32[8]{0} broadcast(%bitcast.1), dimensions={}
  ROOT %multiply.1 = f32[8]{0} multiply(%param_0, %broadcast.1)
}

%both_computation (param_0: f32[8]) -> f32[8] {
  %param_0 = f32[8]{0} parameter(0)
  %slice.2 = f32[1]{0} slice(%param_0), slice={[0:1]}
  %bitcast.2 = f32[] bitcast(%slice.2)
  %broadcast.2 = f32[8]{0} broadcast(%bitcast.2), dimensions={}
  ROOT %add.2 = f32[8]{0} add(%param_0, %broadcast.2)
}

ENTRY %main.3 (p0: f32[8], p1: f32[8]) -> (f32[8], f32[8]) {
  %p0 = f32[8]{0} parameter(0)
  %p1 = f32[8]{0} parameter(1)
  %ordered = f32[8]{0} fusion(%p0, %p1), kind=kLoop, calls=%sliced_computation
  %both = f32[8]{0} fusion(%p1), kind=kLoop, calls=%both_computation
  ROOT %tuple.3 = (f32[8]{0}, f32[8]{0}) tuple(%ordered, %both)
}
"""


def test_an_operand_read_only_through_a_slice_is_not_a_full_read():
    # ordered: p0 read + 1 written (p1's first element is not an array);
    # both: p1 read whole (its slice does not make it partial) + 1 written.
    assert bench_copies.count_full_traffic(SLICED, 8) == (4, 4)
