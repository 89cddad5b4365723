"""Small ONNX models with If and Loop (onnx.helper), for test_control_flow.py.

Every model has one float input ``x`` [2, 3] and named outputs; ONNX Runtime runs the model
itself (the oracle), the engine its unrolled import.
"""
import numpy as np
from onnx import TensorProto as T, helper, numpy_helper

SHAPE = [2, 3]
RNG = np.random.default_rng(0)
W = RNG.standard_normal((3, 3)).astype(np.float32) * 0.5       # a carried weight
B = RNG.standard_normal(SHAPE).astype(np.float32)               # a weight read from outer scope


def tensor(name, elem, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def const(name, value, dtype=None):
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def model(nodes, outputs, initializers=(), inputs=None, opset=13):
    graph = helper.make_graph(nodes, 'control_flow', inputs or [tensor('x', T.FLOAT, SHAPE)],
                              [tensor(o, T.FLOAT) for o in outputs], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


# --- If ---------------------------------------------------------------------------------------

def branch(name, op, inner=None):
    """A branch reading the outer ``x`` and ``b`` and its own initializer: op(x, b) * 2
    (+ the output of an ``inner`` If node, when given)."""
    nodes = [helper.make_node(op, ['x', 'b'], [f'{name}_t']),
             helper.make_node('Mul', [f'{name}_t', f'{name}_two'], [f'{name}_out'])]
    if inner is not None:
        nodes[-1].output[0] = f'{name}_mid'
        nodes += [inner, helper.make_node('Add', [f'{name}_mid', inner.output[0]],
                                          [f'{name}_out'])]
    return helper.make_graph(nodes, name, [], [tensor(f'{name}_out', T.FLOAT, SHAPE)],
                             [const(f'{name}_two', 2.0, np.float32)])


def if_node(name, cond, then_op='Add', else_op='Sub', inner=None):
    return helper.make_node('If', [cond], [f'{name}_y'], name,
                            then_branch=branch(f'{name}_then', then_op, inner),
                            else_branch=branch(f'{name}_else', else_op))


def if_model(cond, nested=False, computed=False, direct=False):
    """If on a constant ``cond`` (or, ``computed``, on ``Shape(x)[0] == 2`` xor not ``cond``);
    ``nested``: the then branch holds an If on a constant; ``direct``: the If's output is the
    graph output, else it is read by a Relu."""
    inner = if_node('inner', 'c_inner', 'Mul', 'Div') if nested else None
    nodes = []
    if computed:
        nodes = [helper.make_node('Shape', ['x'], ['shape']),
                 helper.make_node('Gather', ['shape', 'zero'], ['rows']),
                 helper.make_node('Equal', ['rows', 'two'], ['is_two']),
                 helper.make_node('Xor', ['is_two', 'c_not'], ['c'])]
    nodes.append(if_node('if', 'c', inner=inner))
    if not direct:
        nodes.append(helper.make_node('Relu', ['if_y'], ['y']))
    inits = [const('b', B), const('c', cond), const('c_inner', not cond),
             const('zero', 0, np.int64), const('two', 2, np.int64), const('c_not', not cond)]
    if computed:
        inits = [t for t in inits if t.name != 'c']
    return model(nodes, ['if_y' if direct else 'y'], inits)


# --- Loop -------------------------------------------------------------------------------------

def loop_body(stop='counter', extra=(), scan=True):
    """Body (i, cond, y, k, w) -> (cond, y, k, w[, scan y]): y = y @ w + x * i + b,
    k = k + 1, w passed through unchanged. ``stop``: 'counter' (cond = k + 1 < limit),
    'trips' (cond passed through) or 'data' (cond = sum(y) < 10). ``extra`` nodes may
    rewrite y_new into y_out."""
    nodes = [helper.make_node('Cast', ['i'], ['fi'], to=T.FLOAT),
             helper.make_node('Transpose', ['w_in'], ['wt'], perm=[1, 0]),   # loop-invariant
             helper.make_node('MatMul', ['y_in', 'wt'], ['yw']),
             helper.make_node('Mul', ['x', 'fi'], ['xi']),
             helper.make_node('Add', ['yw', 'xi'], ['yx']),
             helper.make_node('Add', ['yx', 'b'], ['y_new']),
             helper.make_node('Add', ['k_in', 'one'], ['k_out'])]
    nodes += list(extra) or [helper.make_node('Identity', ['y_new'], ['y_out'])]
    if stop == 'counter':
        nodes.append(helper.make_node('Less', ['k_out', 'limit'], ['cond_out']))
    elif stop == 'trips':
        nodes.append(helper.make_node('Identity', ['cond_in'], ['cond_out']))
    else:
        nodes += [helper.make_node('ReduceSum', ['y_out'], ['total'], keepdims=0),
                  helper.make_node('Less', ['total', 'ten'], ['cond_out'])]
    outputs = [tensor('cond_out', T.BOOL, []), tensor('y_out', T.FLOAT, SHAPE),
               tensor('k_out', T.INT64, []), tensor('w_in', T.FLOAT, [3, 3])]
    if scan:
        nodes.append(helper.make_node('Mul', ['y_out', 'half'], ['scan_y']))
        outputs.append(tensor('scan_y', T.FLOAT, SHAPE))
    inputs = [tensor('i', T.INT64, []), tensor('cond_in', T.BOOL, []),
              tensor('y_in', T.FLOAT, SHAPE), tensor('k_in', T.INT64, []),
              tensor('w_in', T.FLOAT, [3, 3])]
    return helper.make_graph(nodes, 'body', inputs, outputs,
                             [const('one', 1, np.int64), const('half', 0.5, np.float32)])


def loop_model(trips=5, limit=100, stop='counter', scan=True, initial_cond='computed',
               extra=()):
    """A Loop over ``loop_body``: M = ``trips`` (None: absent), the initial condition
    ``k0 < limit`` computed from constants ('computed'), a constant True ('true') or absent
    (None). Outputs y, k (cast to float) and, with ``scan``, the stacked scan output."""
    cond = {'computed': 'cond0', 'true': 'true', None: ''}[initial_cond]
    outs = ['y_n', 'k_n', 'w_n'] + (['ys'] if scan else [])
    nodes = [helper.make_node('Less', ['k0', 'limit'], ['cond0']),
             helper.make_node('Loop', ['M' if trips is not None else '', cond, 'y0', 'k0', 'w'],
                              outs, 'loop', body=loop_body(stop, extra, scan)),
             helper.make_node('Cast', ['k_n'], ['k'], to=T.FLOAT)]
    inits = [const('y0', np.zeros(SHAPE, np.float32)), const('k0', 0, np.int64),
             const('w', W), const('b', B), const('limit', limit, np.int64),
             const('true', True), const('ten', 10.0, np.float32)]
    if trips is not None:
        inits.append(const('M', trips, np.int64))
    return model(nodes, ['y_n', 'k'] + (['ys'] if scan else []), inits)


def nested_loop_model(outer=3, inner=2):
    """Loop (M=outer) whose body holds a Loop (M=inner) reading the outer body's iteration
    number and carried value, and an If on ``i < 1`` (known per iteration)."""
    inner_body = helper.make_graph(
        [helper.make_node('Cast', ['j'], ['fj'], to=T.FLOAT),
         helper.make_node('Cast', ['i'], ['fi'], to=T.FLOAT),              # outer iteration
         helper.make_node('Mul', ['z_in', 'fj'], ['zj']),
         helper.make_node('Add', ['zj', 's_in'], ['zs']),                    # outer carried
         helper.make_node('Add', ['zs', 'fi'], ['z_out']),
         helper.make_node('Identity', ['c_in'], ['c_out'])],
        'inner', [tensor('j', T.INT64, []), tensor('c_in', T.BOOL, []),
                  tensor('z_in', T.FLOAT, SHAPE)],
        [tensor('c_out', T.BOOL, []), tensor('z_out', T.FLOAT, SHAPE)])
    first = helper.make_node('If', ['early'], ['picked'], 'pick',
                             then_branch=branch('early_then', 'Add'),
                             else_branch=branch('early_else', 'Sub'))
    outer_body = helper.make_graph(
        [helper.make_node('Less', ['i', 'one'], ['early']), first,
         helper.make_node('Loop', ['inner_m', '', 's_in'], ['z'], 'inner_loop',
                          body=inner_body),
         helper.make_node('Add', ['z', 'picked'], ['s_out']),
         helper.make_node('Identity', ['c_in'], ['c_out'])],
        'outer', [tensor('i', T.INT64, []), tensor('c_in', T.BOOL, []),
                  tensor('s_in', T.FLOAT, SHAPE)],
        [tensor('c_out', T.BOOL, []), tensor('s_out', T.FLOAT, SHAPE)],
        [const('inner_m', inner, np.int64), const('one', 1, np.int64)])
    nodes = [helper.make_node('Loop', ['outer_m', '', 'x'], ['s'], 'outer_loop',
                              body=outer_body)]
    return model(nodes, ['s'], [const('outer_m', outer, np.int64), const('b', B)])


# --- Scan -------------------------------------------------------------------------------------

def scan_model(input_axis=0, reverse_in=0, output_axis=0, reverse_out=0, from_weight=False):
    """Scan over x [2, 3] (or a constant of its shape) along ``input_axis`` with a running
    sum state and a second scan input read in the other direction; scan outputs: the sum
    (stacked along ``output_axis``) and the product of the two elements."""
    width = SHAPE[1 - input_axis]
    body = helper.make_graph(
        [helper.make_node('Add', ['s_in', 'e'], ['s_out']),
         helper.make_node('Mul', ['e', 'f'], ['p']),
         helper.make_node('Add', ['s_out', 'b_row'], ['y'])],
        'scan_body', [tensor('s_in', T.FLOAT, [width]), tensor('e', T.FLOAT, [width]),
                      tensor('f', T.FLOAT, [width])],
        [tensor('s_out', T.FLOAT, [width]), tensor('y', T.FLOAT, [width]),
         tensor('p', T.FLOAT, [width])])
    source = 'xc' if from_weight else 'x'
    node = helper.make_node('Scan', ['s0', source, 'x'], ['s', 'ys', 'ps'], 'scan',
                            body=body, num_scan_inputs=2,
                            scan_input_axes=[input_axis, input_axis],
                            scan_input_directions=[reverse_in, 1 - reverse_in],
                            scan_output_axes=[output_axis, 0],
                            scan_output_directions=[reverse_out, 0])
    inits = [const('s0', np.ones(width, np.float32)), const('xc', B * 3),
             const('b_row', np.arange(width, dtype=np.float32))]
    return model([node], ['s', 'ys', 'ps'], inits)
