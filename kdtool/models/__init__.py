"""Every network kdtool trains: the registry and kdtool's own image models (:mod:`.registry`), the text models
(:mod:`.text`) and the timm / torchvision zoos (:mod:`.zoo`)."""
