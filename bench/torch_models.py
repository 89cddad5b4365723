"""PyTorch definitions of the benchmark topologies. Weights are random: latency does not
depend on them.

- ``resnet50``: torchvision's ResNet-50 at 224.
- ``yolov5s``: the YOLOv5s v6.0 topology at 640 (width 0.50, depth 0.33): Conv(BN, SiLU), C3
  with bottlenecks, SPPF, PANet neck with nearest Upsample + concat, Detect head convs (the
  three raw maps are the outputs; decoding is not part of the timed graph on either side).
- ``bert_tiny``: BERT-tiny encoder (2 layers, hidden 128, 2 heads, FFN 512, GELU) over a
  sequence of 128 precomputed embeddings (the token lookup is left out: the input is the
  embedding sum).

    model, shape, input_name, channels_last = make('yolov5s')
"""
import torch
import torch.nn.functional as F
from torch import nn


class Conv(nn.Module):
    """YOLOv5's Conv: Conv2d without bias, BatchNorm, SiLU; 'same' padding by default."""

    def __init__(self, c1, c2, k=1, s=1, p=None):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 Conv, 3x3 Conv, plus the input when ``shortcut`` and the widths match."""

    def __init__(self, c1, c2, shortcut=True):
        super().__init__()
        self.cv1, self.cv2 = Conv(c1, c2, 1), Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with three convolutions (YOLOv5 v6)."""

    def __init__(self, c1, c2, n=1, shortcut=True):
        super().__init__()
        c_ = c2 // 2
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_), Conv(c1, c_), Conv(2 * c_, c2)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools, concatenated."""

    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c_), Conv(c_ * 4, c2)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class YOLOv5s(nn.Module):
    """YOLOv5s v6.0 (layer numbers as in yolov5s.yaml); returns the three Detect maps."""

    def __init__(self, nc=80, na=3):
        super().__init__()
        self.b0, self.b1 = Conv(3, 32, 6, 2, 2), Conv(32, 64, 3, 2)
        self.b2, self.b3 = C3(64, 64, 1), Conv(64, 128, 3, 2)
        self.b4, self.b5 = C3(128, 128, 2), Conv(128, 256, 3, 2)
        self.b6, self.b7 = C3(256, 256, 3), Conv(256, 512, 3, 2)
        self.b8, self.b9 = C3(512, 512, 1), SPPF(512, 512)
        self.h10, self.h13 = Conv(512, 256), C3(512, 256, 1, False)
        self.h14, self.h17 = Conv(256, 128), C3(256, 128, 1, False)
        self.h18, self.h20 = Conv(128, 128, 3, 2), C3(256, 256, 1, False)
        self.h21, self.h23 = Conv(256, 256, 3, 2), C3(512, 512, 1, False)
        self.up = nn.Upsample(None, 2, 'nearest')
        self.detect = nn.ModuleList(nn.Conv2d(c, na * (nc + 5), 1) for c in (128, 256, 512))

    def forward(self, x):
        p3 = self.b4(self.b3(self.b2(self.b1(self.b0(x)))))
        p4 = self.b6(self.b5(p3))
        h10 = self.h10(self.b9(self.b8(self.b7(p4))))
        h14 = self.h14(self.h13(torch.cat((self.up(h10), p4), 1)))
        out3 = self.h17(torch.cat((self.up(h14), p3), 1))
        out4 = self.h20(torch.cat((self.h18(out3), h14), 1))
        out5 = self.h23(torch.cat((self.h21(out4), h10), 1))
        return tuple(m(t) for m, t in zip(self.detect, (out3, out4, out5)))


class BertLayer(nn.Module):
    """One post-norm BERT encoder layer: self-attention, then the GELU feed-forward."""

    def __init__(self, hidden=128, heads=2, ffn=512, eps=1e-12):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(hidden, hidden) for _ in range(3))
        self.o = nn.Linear(hidden, hidden)
        self.ln1, self.ln2 = nn.LayerNorm(hidden, eps=eps), nn.LayerNorm(hidden, eps=eps)
        self.inter, self.out = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
        self.act = nn.GELU()

    def forward(self, x):
        b, s, h = x.shape

        def split(t):
            return t.view(b, s, self.heads, h // self.heads).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)),
                                           split(self.v(x)))
        x = self.ln1(x + self.o(a.transpose(1, 2).reshape(b, s, h)))
        return self.ln2(x + self.out(self.act(self.inter(x))))


class BertTiny(nn.Module):
    """BERT-tiny encoder over embeddings [batch, seq, 128]: embedding LayerNorm, 2 layers."""

    def __init__(self, hidden=128, layers=2, heads=2, ffn=512):
        super().__init__()
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.Sequential(*(BertLayer(hidden, heads, ffn) for _ in range(layers)))

    def forward(self, x):
        return self.layers(self.ln(x))


def _resnet50():
    import torchvision
    return torchvision.models.resnet50(weights=None)


# name -> (constructor, input shape, input name, channels_last for the PyTorch contenders)
MODELS = {
    'resnet50': (_resnet50, (1, 3, 224, 224), 'input', True),
    'yolov5s': (YOLOv5s, (1, 3, 640, 640), 'images', True),
    'bert_tiny': (BertTiny, (1, 128, 128), 'embeddings', False),
}


def make(name, seed=0):
    """(model in eval mode with random weights, input shape, input name, channels_last)."""
    ctor, shape, input_name, channels_last = MODELS[name]
    torch.manual_seed(seed)
    return ctor().eval(), shape, input_name, channels_last
