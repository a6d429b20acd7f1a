"""Model definitions. All graphs export to plain ONNX ops: Conv,
BatchNormalization, Relu, MaxPool, Add, GlobalAveragePool, Flatten, Gemm."""
import torch
import torch.nn as nn


class LeNet5(nn.Module):
    """conv5x5(pad 2)->6, ReLU, maxpool2; conv5x5->16, ReLU, maxpool2;
    FC 400->120, ReLU, FC 120->84, ReLU, FC 84->10. Input 1x28x28."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(400, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


VGG11_CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG11BN(nn.Module):
    """VGG-11 with BatchNorm, CIFAR style (conv3x3 pad 1, five 2x2 max-pools,
    one linear classifier). Input 1x32x32 -> 1x1 after the fifth pool.
    `width` multiplies every channel count (1.0 = 64..512)."""

    def __init__(self, width=1.0, num_classes=10):
        super().__init__()
        layers, c_in = [], 1
        for v in VGG11_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                c = int(round(v * width))
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                           nn.BatchNorm2d(c), nn.ReLU()]
                c_in = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            # option B: 1x1 conv + BN projection
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. CIFAR ResNet-(6n+2): 16/32/64 channels, GAP, FC."""

    def __init__(self, n, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        blocks, c_in = [], 16
        for i, c in enumerate([16, 32, 64]):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c_in, c, stride))
                c_in = c
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def build(name, width=1.0):
    if name == "lenet5":
        return LeNet5()
    if name == "vgg11_bn":
        return VGG11BN(width)
    if name in ("resnet20", "resnet32", "resnet56"):
        return CifarResNet({"resnet20": 3, "resnet32": 5, "resnet56": 9}[name])
    raise ValueError(name)


def num_params(model):
    return sum(p.numel() for p in model.parameters())
