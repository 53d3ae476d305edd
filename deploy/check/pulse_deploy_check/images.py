"""Which Pulse service an image (or a Dockerfile target) runs.

Most checks apply only to Pulse's own containers and differ per service (what it reads,
which metrics it registers, where it may connect), so they need to tell them apart by image.
"""

import re

# Our images, by the name of the service each runs.
SERVICES = ("poller", "gateway", "web", "simulator")


def service_of_image(image):
    image = str(image or "")
    for s in SERVICES:
        if re.search(rf"(^|/)pulse-{s}(:|@|$)", image):
            return s
    return None
