"""A tiny convolutional network as an imbench plug-in model family: ``tinycnn_w<width>``.

``tinycnn_w8`` is three 3 × 3 convolutions of 8, 16 and 32 channels (batch norm, ReLU, stride 2)
and a global average pooling: a backbone of ``4 * width`` pooled features, to which imbench adds
the method's head. It has no published weights: train it with
``protocol_overrides: {pretrained: false}`` (with ``pretrained: true`` the job stops with one
line saying so). Use it with ``plugins: [examples/plugins/my_model.py]`` and
``models: [tinycnn_w8]``; docs/extending.md walks through it.
"""

import imbench


def backbone(spec, pretrained, drop_rate, label):
    """The pooled-feature network of model ``spec.name`` (``tinycnn_w<width>``).

    Its children are named as in a timm backbone: the feature maps (``features``), then
    ``global_pool``; Grad-CAM (``imbench explain``) explains the last feature map before it.
    """
    from torch import nn

    width = int(spec.name.rpartition("_w")[2])
    layers, c_in = [], 3
    for c_out in (width, 2 * width, 4 * width):
        layers += [
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
        c_in = c_out

    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.drop = nn.Dropout(drop_rate)
            self.num_features = c_in  # the width of the pooled features (imbench's head)

        def forward(self, x):
            return self.drop(self.global_pool(self.features(x)))

    return TinyCNN()


imbench.register_model_family(
    imbench.ModelFamily(
        source="tinycnn",
        pattern="tinycnn_w<width>",
        names=r"tinycnn_w[1-9][0-9]{0,2}",
        backbone=backbone,
        input_size=lambda spec: 32,
    )
)
