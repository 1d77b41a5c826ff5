"""examples/classifier.h in PyTorch, module for module under the same names, so that state_dicts
move between the two: the state_dict round-trip test and bench-vs-pytorch's training-step row
both use this one definition. Keep it in step with classifier.h."""
import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(32), nn.BatchNorm2d(64), nn.BatchNorm2d(128)
        self.fc1 = nn.Linear(128 * 3 * 3, 256)
        self.fc2 = nn.Linear(256, 10)
        self.drop1, self.drop2 = nn.Dropout(0.25), nn.Dropout(0.25)

    def forward(self, x):
        relu, pool = torch.relu, nn.functional.max_pool2d
        h = relu(self.bn1(pool(self.conv1(x), 2)))
        h = relu(self.bn2(pool(self.conv2(h), 2)))
        h = relu(self.bn3(pool(self.conv3(h), 2)))
        h = relu(self.fc1(self.drop1(torch.flatten(h, 1))))
        return self.fc2(self.drop2(h))
