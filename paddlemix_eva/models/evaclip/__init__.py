from paddlemix_eva.models.evaclip.configuration import EVACLIPConfig, EVACLIPTextConfig, EVACLIPVisionConfig
from paddlemix_eva.models.evaclip.modeling import EVACLIP, EVACLIPTextTransformer, EVACLIPVisionTransformer
from paddlemix_eva.models.evaclip.tokenizer import CLIPTokenizer, get_tokenizer

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
