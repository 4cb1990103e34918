from .configuration import EVACLIPConfig, EVACLIPTextConfig, EVACLIPVisionConfig
from .modeling import EVACLIP, EVACLIPTextTransformer, EVACLIPVisionTransformer
from .tokenizer import CLIPTokenizer, get_tokenizer

__all__ = [
    "EVACLIPConfig",
    "EVACLIPVisionConfig",
    "EVACLIPTextConfig",
    "EVACLIP",
    "EVACLIPVisionTransformer",
    "EVACLIPTextTransformer",
    "CLIPTokenizer",
    "get_tokenizer",
]
