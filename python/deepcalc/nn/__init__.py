"""Neural-network layers and the Module API (``dc.nn``)."""
from . import functional, init
from .layers import (GELU, Dropout, Flatten, Identity, Linear, ReLU, Sigmoid, Softmax,
                     Standardize, Tanh)
from .mlp import MLP
from .normalization import BatchNorm1d, LayerNorm
from .rnn import RNN
from .embedding import Embedding, PositionalEncoding
from .transformer import (MultiHeadAttention, MultiheadAttention, Transformer,
                          TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
                          TransformerEncoderLayer)
from .transformer_models import Seq2SeqTransformer, TransformerLM
from . import decoding
from .module import Module, ModuleList, Parameter, RemovableHandle, Sequential

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "RemovableHandle", "Linear", "RNN", "ReLU",
           "Tanh", "Sigmoid", "GELU", "Softmax", "Identity", "Dropout", "Flatten", "Standardize", "MLP", "BatchNorm1d", "LayerNorm",
           "functional", "init", "Embedding", "PositionalEncoding", "MultiHeadAttention",
           "MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer",
           "TransformerEncoder", "TransformerDecoder", "Transformer", "Seq2SeqTransformer",
           "TransformerLM", "decoding"]
