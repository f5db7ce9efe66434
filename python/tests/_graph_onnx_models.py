"""ONNX graphs built with onnx.helper for the channel-pruning tests (residual, concat,
depthwise with multiplier 2, squeeze-excite, grouped conv, Flatten→MatMul/Gemm, ConvTranspose)."""
import numpy as np
import onnx
from onnx import helper, TensorProto, numpy_helper

def _init(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

class Builder:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed); self.nodes=[]; self.inits=[]; self.n=0
    def name(self, p): self.n+=1; return f"{p}{self.n}"
    def w(self, shape, scale=0.3):
        n = self.name("w"); self.inits.append(_init(n, self.rng.normal(0, scale, shape))); return n
    def op(self, op, inputs, **attrs):
        out = self.name(op.lower()); self.nodes.append(helper.make_node(op, inputs, [out], name=out+"_node", **attrs)); return out
    def conv(self, x, cin, cout, k=3, group=1, stride=1, pad=None, dil=1):
        pad = (k//2)*dil if pad is None else pad
        return self.op("Conv", [x, self.w((cout, cin//group, k, k)), self.w((cout,), 0.1)], group=group, strides=[stride]*2, pads=[pad]*4, dilations=[dil]*2)
    def bn(self, x, c):
        r=self.rng
        ins=[x]
        for v in (r.uniform(.5,1.5,c), r.normal(0,.3,c), r.normal(0,.3,c), r.uniform(.5,2,c)):
            n=self.name("bn"); self.inits.append(_init(n, v)); ins.append(n)
        return self.op("BatchNormalization", ins, epsilon=1e-5)
    def model(self, x_shape, out, out_shape):
        g = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); m.ir_version = 8
        onnx.checker.check_model(m); return m

def residual():
    b=Builder(1); x=b.conv("x",3,16); x=b.op("Relu",[b.bn(x,16)])
    y=b.op("Relu",[b.bn(b.conv(x,16,24),24)]); y=b.bn(b.conv(y,24,16),16); x=b.op("Relu",[b.op("Add",[x,y])])
    y=b.op("Relu",[b.conv(x,16,32, stride=2, dil=1)]); y=b.conv(y,32,16,k=1); x2=b.op("MaxPool",[x],kernel_shape=[2,2],strides=[2,2])
    x=b.op("Add",[x2,y]); x=b.op("GlobalAveragePool",[x]); x=b.op("Flatten",[x],axis=1)
    out=b.op("Gemm",[x,b.w((10,16)),b.w((10,),.1)],transB=1)
    return b.model([2,3,16,16], out, [2,10])

def concat_depthwise_se():
    b=Builder(2); x=b.op("Relu",[b.bn(b.conv("x",3,16),16)])
    d=b.op("Relu",[b.bn(b.conv(x,16,32,group=16),32)])          # depthwise, multiplier 2
    p=b.conv(d,32,24,k=1)
    # squeeze-excite on p
    s=b.op("GlobalAveragePool",[p]); s=b.op("Relu",[b.conv(s,24,8,k=1)]); s=b.op("Sigmoid",[b.conv(s,8,24,k=1)])
    p=b.op("Mul",[p,s])
    q=b.conv(x,16,12,k=1, dil=2)
    c=b.op("Concat",[p,q],axis=1)                                 # 36 channels: 24 then 12
    c=b.conv(c,36,20,k=3,group=4)                                 # grouped conv (9 in, 5 out per group)
    c=b.op("Relu",[c])
    f=b.op("Flatten",[b.op("AveragePool",[c],kernel_shape=[4,4],strides=[4,4])],axis=1)   # 20*4*4 features
    h=b.op("Relu",[b.op("Add",[b.op("MatMul",[f,b.w((320,32),.1)]), b.w((32,),.1)])])
    out=b.op("Gemm",[h,b.w((32,5)),b.w((5,),.1)])
    return b.model([2,3,16,16], out, [2,5])

def conv_transpose():
    b=Builder(3); x=b.op("Relu",[b.conv("x",3,16,stride=2)])
    y=b.op("ConvTranspose",[x,b.w((16,12,2,2)),b.w((12,),.1)],strides=[2,2])
    y=b.op("Relu",[b.bn(y,12)]); out=b.conv(y,12,4,k=1)
    return b.model([2,3,16,16], out, [2,4,16,16])
