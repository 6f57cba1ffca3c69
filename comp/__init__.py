"""comp: a Kaggle image-classification competition from data to leaderboard with fastai and timm."""
__version__ = '0.1.0'
